"""The `discover` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from discover import config as config_mod
from discover.config import Config, ConfigError
from discover.environment import InvalidArtifact, UnknownEnvironment, load_environment, registered

# --flag -> (section, key) for `discover run`; None defaults mean "not given".
RUN_FLAGS = {
    "steps": ("run", "steps"), "groups": ("run", "groups"), "group_size": ("run", "group_size"),
    "seed": ("run", "seed"), "budget_s": ("run", "budget_s"), "run_dir": ("run", "run_dir"),
    "init": ("run", "init_file"), "selection": ("run", "selection"),
    "model": ("policy", "model"), "backend": ("policy", "backend"),
    "base_url": ("policy", "base_url"), "max_new_tokens": ("policy", "max_new_tokens"),
    "learner": ("learner", "method"), "ray_address": ("ray", "address"),
}


def build_config(args: argparse.Namespace) -> Config:
    """Defaults <- saved run config (on --resume) <- --config FILE <- flags <- --set."""
    values: dict = {}
    if args.resume:
        if not args.run_dir:
            raise ConfigError("--resume needs --run-dir (the run to continue)")
        saved = Path(args.run_dir) / "config.toml"
        if not saved.exists():
            raise ConfigError(f"cannot resume: {saved} not found")
        values = config_mod.load_toml(saved)
    cfg = config_mod.apply(Config(), values)
    if args.config:
        config_mod.apply(cfg, config_mod.load_toml(args.config))
    flags: dict = {"run": {"env": args.env}}
    for flag, (section, key) in RUN_FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    config_mod.apply(cfg, flags)
    config_mod.apply(cfg, config_mod.parse_set(args.set or []))
    cfg.validate()
    return cfg


def cmd_run(args: argparse.Namespace) -> int:
    from discover import search
    from discover.progress import Progress

    cfg = build_config(args)
    env = load_environment(cfg.run.env, **cfg.env)
    print(f"discover: {cfg.run.env} ({env.direction}imise), {cfg.run.steps} steps x "
          f"{cfg.run.groups} groups x {cfg.run.group_size}, model {cfg.policy.model}, "
          f"learner {cfg.learner.method}", file=sys.stderr)
    try:
        run_dir = search.run(cfg, resume=args.resume, on_step=Progress(cfg.run.env, env.direction))
    except KeyboardInterrupt:
        print(f"\ninterrupted: the step in progress was discarded; finished steps are stored.\n"
              f"resume with: discover run {cfg.run.env} --run-dir {cfg.run.run_dir} --resume",
              file=sys.stderr)
        return 130
    print(f"run directory: {run_dir}\nbest: discover best {run_dir}", file=sys.stderr)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from discover.archive import Archive

    run_dir = Path(args.run)
    archive = Archive(run_dir / "archive.sqlite", readonly=True)
    env_name = archive.get_meta("env")
    best = archive.best(args.k)
    print(f"{env_name}: {archive.count()} candidates, {archive.count(ok=True)} valid, "
          f"{archive.last_step() + 1} steps finished")
    if not best:
        print("no valid candidate yet")
        return 1
    print(f"{'rank':>4}  {'id':>6}  {'step':>4}  {'score':>16}  {'reward':>12}  artefact")
    for rank, c in enumerate(best, 1):
        path = run_dir / "artifacts" / f"{c.id}.json"
        if not path.exists():  # initial states, or a kill between commit and file write
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(c.artifact))
        print(f"{rank:>4}  {c.id:>6}  {c.step:>4}  {c.score:>16.10f}  {c.reward:>12.6g}  {path}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    env = load_environment(args.env)
    try:
        artifact = env.load_artifact(args.file)
    except InvalidArtifact as e:
        print(f"invalid: {e}", file=sys.stderr)
        return 1
    ev = env.verify(artifact)
    if not ev.ok:
        print(f"invalid: {args.file}: {ev.log}", file=sys.stderr)
        return 1
    print(f"{ev.score:.10f}")
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    print(f"{'name':<20} {'direction':<9} {'language':<8} {'budget_s':>8}  resources")
    for name, ep in sorted(registered().items()):
        try:
            d = ep.load().describe()
        except Exception as e:  # a broken plugin must not hide the others
            print(f"{name:<20} (failed to load: {type(e).__name__}: {e})")
            continue
        res = f"{d['cpu_slots']} CPU" + (f", {d['gpus']} GPU" if d["gpus"] else "")
        print(f"{name:<20} {d['direction']:<9} {d['language']:<8} {d['time_budget_s']:>8g}  {res}")
    return 0


def cmd_new_env(args: argparse.Namespace) -> int:
    from discover.scaffold import write_skeleton

    try:
        root = write_skeleton(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as e:
        print(f"discover: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {root}\nnext: pip install -e {root} && discover envs && pytest {root}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="discover", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) a discovery search on an environment")
    r.add_argument("env")
    r.add_argument("--steps", type=int)
    r.add_argument("--groups", type=int, help="parents per step (B)")
    r.add_argument("--group-size", type=int, help="completions per parent (G)")
    r.add_argument("--seed", type=int)
    r.add_argument("--budget-s", type=float, help="wall-clock budget for the whole run")
    r.add_argument("--run-dir")
    r.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    r.add_argument("--init", help="JSON file with a known construction to start from")
    r.add_argument("--selection", choices=["puct", "greedy", "fixed"])
    r.add_argument("--model", help="'smollm2' (embedded) or a model folder / name")
    r.add_argument("--backend", choices=["hf", "openai", "vllm"])
    r.add_argument("--base-url", help="OpenAI-compatible endpoint for --backend openai")
    r.add_argument("--max-new-tokens", type=int)
    r.add_argument("--learner", choices=["none", "entropic", "entropic-fixed", "mean"])
    r.add_argument("--ray-address", help="join an existing Ray cluster")
    r.add_argument("--config", help="TOML config file")
    r.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("best", help="the best candidates of a run")
    b.add_argument("run")
    b.add_argument("-k", type=int, default=5)
    b.set_defaults(func=cmd_best)

    v = sub.add_parser("verify", help="score an artefact file without running any program")
    v.add_argument("env")
    v.add_argument("file")
    v.set_defaults(func=cmd_verify)

    e = sub.add_parser("envs", help="list installed environments")
    e.set_defaults(func=cmd_envs)

    n = sub.add_parser("new-env", help="write a working skeleton of a new environment package")
    n.add_argument("name")
    n.add_argument("--dir", default=".")
    n.set_defaults(func=cmd_new_env)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownEnvironment, InvalidArtifact, FileNotFoundError) as e:
        print(f"discover: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


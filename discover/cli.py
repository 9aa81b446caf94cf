"""The `discover` command line."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import warnings
from pathlib import Path

from discover import config as config_mod
from discover.archive import ArchiveError, CandidateNotFound
from discover.backends.base import BackendError
from discover.config import Config, ConfigError
from discover.environment import InvalidArtifact, InvalidOptions
from discover.registry import (
    UnknownEnvironment,
    canonical_name,
    load_environment,
    recommended,
    registered,
)
from discover.rundir import RunDir

# --flag -> (section, key) for `discover run`; None defaults mean "not given".
RUN_FLAGS = {
    "steps": ("run", "steps"), "groups": ("run", "groups"), "group_size": ("run", "group_size"),
    "seed": ("run", "seed"), "budget_s": ("run", "budget_s"), "run_dir": ("run", "run_dir"),
    "init": ("run", "init_file"), "init_from": ("run", "init_from"),
    "selection": ("run", "selection"),
    "model": ("policy", "model"), "backend": ("policy", "backend"),
    "base_url": ("policy", "base_url"), "max_new_tokens": ("policy", "max_new_tokens"),
    "learner": ("learner", "method"), "ray_address": ("ray", "address"), "log": ("run", "log"),
}


def build_config(args: argparse.Namespace) -> Config:
    """The run's config from its layers (config.resolve): the environment's recommended
    settings <- saved run config (on --resume) <- --config FILE <- flags <- --set."""
    layers: list[dict] = []
    if args.resume:
        if not args.run_dir:
            raise ConfigError("--resume needs --run-dir (the run to continue)")
        saved = RunDir(args.run_dir).config
        if not saved.exists():
            raise ConfigError(f"cannot resume: {saved} not found")
        layers.append(config_mod.load_toml(saved))
    if args.config:
        layers.append(config_mod.load_toml(args.config))
    flags: dict = {"run": {"env": canonical_name(args.env)}}
    for flag, (section, key) in RUN_FLAGS.items():
        value = getattr(args, flag)
        if isinstance(value, list):  # --log, given once per sink
            value = ",".join(value)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    layers += [flags, config_mod.parse_set(args.set or [])]
    return config_mod.resolve(layers, recommended)


def cmd_run(args: argparse.Namespace) -> int:
    from discover import search
    from discover.progress import Progress

    cfg = build_config(args)
    try:  # once: the header needs it, and the search takes it
        env = load_environment(cfg.run.env, **cfg.env)
    except ValueError as e:  # it refused its options, e.g. a timed mode on a machine without GPU
        raise ConfigError(str(e)) from e
    print(f"discover: {cfg.run.env} ({env.direction}imise), {cfg.run.steps} steps x "
          f"{cfg.run.groups} groups x {cfg.run.group_size}, model {cfg.policy.model}, "
          f"learner {cfg.learner.method}", file=sys.stderr)
    try:
        run_dir = search.run(cfg, resume=args.resume, env=env,
                             on_step=Progress(cfg.run.env, env.direction))
    except search.Interrupted as e:
        print(f"\ndiscover: interrupted: {e}\nresume with: {e.resume}", file=sys.stderr)
        return 130
    print(f"run directory: {run_dir}\nbest: discover best {run_dir}", file=sys.stderr)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    from discover.archive import Archive

    run_dir = Path(args.run)
    archive = Archive(RunDir(run_dir).archive, readonly=True)
    env_name = archive.get_meta("env")
    best = archive.best(args.k)
    print(f"{env_name}: {archive.count()} candidates, {archive.count(ok=True)} valid, "
          f"{archive.last_step() + 1} steps finished")
    if not best:
        print("no valid candidate yet")
        return 1
    print(f"{'rank':>4}  {'id':>6}  {'step':>4}  {'score':>16}  {'reward':>12}  artefact")
    for rank, c in enumerate(best, 1):
        # Read-only: a run may be writing this directory. Initial states (and a candidate of a
        # run killed between commit and file write) have no file; their artefact is in the
        # archive, and `discover export` writes it out.
        path = RunDir(run_dir).artifact(c.id)
        where = path if path.exists() else f"in the archive: discover export {run_dir} {c.id}"
        print(f"{rank:>4}  {c.id:>6}  {c.step:>4}  {c.score:>16.10f}  {c.reward:>12.6g}  {where}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    sets = config_mod.parse_set(args.set or [])
    if set(sets) - {"env"}:
        raise ConfigError("verify takes only environment options: --set env.KEY=VALUE")
    env = load_environment(canonical_name(args.env), **sets.get("env", {}))
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


def cmd_show(args: argparse.Namespace) -> int:
    from discover.views.inspection import open_run, show_text

    print(show_text(open_run(args.run), args.id, full=args.full))
    return 0


def cmd_tree(args: argparse.Namespace) -> int:
    from discover.views.inspection import open_run, tree_text

    print(tree_text(open_run(args.run), args.id, depth=args.depth, width=args.width))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from discover.views.inspection import export, open_run, verify_command

    run = open_run(args.run)
    files = export(run, args.id, args.out, args.format)
    for kind, path in files.items():
        print(f"{kind:<10} {path}")
    if "artifact" in files:
        print(f"re-verify: {verify_command(run, files['artifact'])}")
    else:
        print(f"a problem folder for {args.format}; here: discover run {args.out}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from discover.views.inspection import compare_text, open_run

    print(compare_text([open_run(r) for r in args.runs]))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from discover.views.report import write_report

    html = write_report(args.run, args.out)
    print(f"report: {html}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from discover.views.ui import serve

    try:
        serve(args.runs, host=args.host, port=args.port)
    except KeyboardInterrupt:  # Ctrl-C is how a server is stopped: not an error
        print("\ndiscover ui: stopped", file=sys.stderr)
    return 0


def cmd_envs(args: argparse.Namespace) -> int:
    print(f"{'name':<20} {'direction':<9} {'language':<8} {'budget_s':>8}  {'resources':<14}  "
          "recommended settings")
    for name, ep in sorted(registered().items()):
        try:
            d = ep.load().describe()
        except Exception as e:  # a broken plugin must not hide the others
            print(f"{name:<20} (failed to load: {type(e).__name__}: {e})")
            continue
        res = f"{d['cpu_slots']} CPU" + (f", {d['gpus']} GPU" if d["gpus"] else "")
        settings = " ".join(f"{section}.{key}={json.dumps(value)}"  # as --set takes them
                            for section, items in d["recommended"].items()
                            for key, value in items.items())
        print(f"{name:<20} {d['direction']:<9} {d['language']:<8} {d['time_budget_s']:>8g}  "
              f"{res:<14}  {settings or '-'}")
    return 0


def cmd_new_env(args: argparse.Namespace) -> int:
    from discover.scaffold import write_folder_skeleton, write_skeleton

    try:
        root = write_folder_skeleton(args.name, Path(args.dir), Path(getattr(args, "from"))) \
            if getattr(args, "from") else write_skeleton(args.name, Path(args.dir))
    except (ValueError, FileExistsError) as e:
        print(f"discover: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {root}\nnext: pip install -e {root} && discover envs && pytest {root}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from discover.integrity import check_run_dir

    problems = check_run_dir(args.run)
    if not problems:
        print(f"{args.run}: sound (archive integrity, whole steps, artefact files, metrics, "
              f"adapters)")
        return 0
    print(f"{args.run}: {len(problems)} problem(s)", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    if not check_run_dir(args.run, repairable_ok=True):
        print("only files that `discover run ENV --run-dir RUN --resume` rewrites are missing "
              "or behind (a killed run); the archive is sound", file=sys.stderr)
    return 1


def cmd_doctor(args: argparse.Namespace) -> int:
    from discover import doctor

    return doctor.run(args)


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
    r.add_argument("--init-from", metavar="RUN",
                   help="start from another run's initial states, as stored (paired ablations)")
    r.add_argument("--selection", choices=["puct", "greedy", "fixed"])
    r.add_argument("--model", help="'smollm2' (embedded) or a model folder / name")
    r.add_argument("--backend", choices=["hf", "openai", "vllm", "null"],
                   help="null: no model, children re-run their parent's program (a baseline)")
    r.add_argument("--base-url", help="OpenAI-compatible endpoint for --backend openai")
    r.add_argument("--max-new-tokens", type=int)
    r.add_argument("--learner", choices=["none", "entropic", "entropic-fixed", "mean"],
                   help="entropic by default (test-time RL); none: search without learning")
    r.add_argument("--ray-address", help="join an existing Ray cluster")
    r.add_argument("--log", action="append", choices=["tensorboard", "wandb"],
                   help="also log per-step metrics to TensorBoard or W&B (optional extras)")
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
    v.add_argument("--set", action="append", metavar="env.KEY=VALUE",
                   help="an environment option, as the run had it (e.g. env.cases=8)")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("show", help="one candidate: code, artefact, score, log and lineage")
    s.add_argument("run")
    s.add_argument("id", type=int)
    s.add_argument("--full", action="store_true",
                   help="the whole artefact and the model's whole completion")
    s.set_defaults(func=cmd_show)

    t = sub.add_parser("tree", help="the lineage tree of the best (or a given) candidate")
    t.add_argument("run")
    t.add_argument("id", type=int, nargs="?")
    t.add_argument("--depth", type=int, default=1, help="generations of descendants shown")
    t.add_argument("--width", type=int, default=8, help="children shown per candidate")
    t.set_defaults(func=cmd_tree)

    x = sub.add_parser("export", help="write a candidate's artefact and program to a folder")
    x.add_argument("run")
    x.add_argument("id", type=int, nargs="?", help="default: the best candidate")
    x.add_argument("--out", required=True, help="a new (or empty) folder")
    x.add_argument("--format", choices=["discover", "openevolve", "shinka"], default="discover",
                   help="openevolve / shinka: a problem folder of that tool, the program as its "
                        "initial program")
    x.set_defaults(func=cmd_export)

    c = sub.add_parser("compare", help="best, valid rate and samples-to-best of runs")
    c.add_argument("runs", nargs="+")
    c.set_defaults(func=cmd_compare)

    rp = sub.add_parser("report", help="an HTML report with plots (and the PNGs)")
    rp.add_argument("run")
    rp.add_argument("--out", help="folder for report.html and the PNGs (default RUN/report)")
    rp.set_defaults(func=cmd_report)

    u = sub.add_parser("ui", help="a live, read-only page of runs in the browser (and a JSON "
                                  "API)")
    u.add_argument("runs", nargs="+", metavar="RUN")
    u.add_argument("--port", type=int, default=8765, help="default 8765; 0: any free port")
    u.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1, this machine only)")
    u.set_defaults(func=cmd_ui)

    e = sub.add_parser("envs", help="list installed environments")
    e.set_defaults(func=cmd_envs)

    n = sub.add_parser("new-env", help="write a working skeleton of a new environment package")
    n.add_argument("name")
    n.add_argument("--dir", default=".")
    n.add_argument("--from", metavar="FOLDER", help="start from an OpenEvolve or ShinkaEvolve "
                   "problem folder (copied into the package; its evaluator judges at first)")
    n.set_defaults(func=cmd_new_env)

    c = sub.add_parser("check", help="integrity check of a run directory (archive and files)")
    c.add_argument("run")
    c.set_defaults(func=cmd_check)

    d = sub.add_parser("doctor", help="check this installation and say how to fix what is missing")
    from discover.doctor import add_arguments

    add_arguments(d)
    d.set_defaults(func=cmd_doctor)
    return p


def _format_warning(message, category, filename, lineno, line=None) -> str:
    from discover.problem_folder import FolderWarning

    if issubclass(category, FolderWarning):  # the user's folder, not our code: no source line
        return f"discover: warning: {message}\n"
    return DEFAULT_FORMAT(message, category, filename, lineno, line)


DEFAULT_FORMAT = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _format_warning
    from discover.model.store import MissingModel

    args = parser().parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return rc
    except BrokenPipeError:
        # The reader went away (`discover best RUN | head -3`): stop quietly, as `cat` does, with
        # the status of a process ended by SIGPIPE. Python flushes stdout once more at exit:
        # point it at /dev/null so that flush is silent too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ConfigError, UnknownEnvironment, InvalidArtifact, InvalidOptions, ArchiveError,
            CandidateNotFound, MissingModel, BackendError, FileNotFoundError,
            FileExistsError) as e:
        print(f"discover: error: {e}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as e:  # the machine's side: disk full, permissions, ...
        print(f"discover: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndiscover: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


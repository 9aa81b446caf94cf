"""Runner executed inside the sandbox as main.py (see discover/sandbox.py: run_function).

It compiles program.py, imports it, calls the requested function with the arguments in
call.json (JSON values, numpy arrays as .npy files), and saves the return value to result.npy.
The outcome goes to status.json and the exit code; the driver trusts neither for the score
(the environment re-verifies the array), only for naming the failure.
Standard library + numpy only: this file must run in any candidate's interpreter.
"""

import json
import os
import sys
import traceback

EXIT = {"ok": 0, "crash": 10, "syntax_error": 11, "memory": 12, "invalid_output": 13}
NUMERIC_KINDS = "biufc"  # bool, int, unsigned, float, complex


def finish(status, message=""):
    # Bind everything before the program runs: it may monkeypatch json, os or numpy.
    try:
        with open("status.json", "w") as f:
            json.dump({"status": status, "message": message[-4000:]}, f)
    except BaseException:  # noqa: B036 - e.g. MemoryError or a full disk; the exit code still says it
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: B036
            pass
    os._exit(EXIT[status])  # skip the program's atexit handlers and lingering threads


def describe(exc):
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def main():
    with open("call.json") as f:
        call = json.load(f)
    with open("program.py", "rb") as f:
        source = f.read()
    try:
        code = compile(source, "program.py", "exec")
    except (SyntaxError, ValueError) as e:  # ValueError: null bytes in the source
        finish("syntax_error", "".join(traceback.format_exception_only(type(e), e)))

    import types

    import numpy as np

    asarray, save = np.asarray, np.save
    kwargs = dict(call["kwargs"])
    for name, path in call["arrays"].items():
        kwargs[name] = np.load(path, allow_pickle=False)

    module = types.ModuleType("program")
    module.__file__ = os.path.abspath("program.py")
    sys.modules["program"] = module
    stage = "importing the program"
    try:
        exec(code, module.__dict__)
        function = module.__dict__.get(call["function"])
        if not callable(function):
            finish("crash", f"the program defines no function {call['function']!r} "
                            f"(expected `def {call['function']}(...)` at top level)")
        stage = f"calling {call['function']}()"
        value = function(**kwargs)
    except MemoryError as e:
        finish("memory", f"MemoryError while {stage}\n{describe(e)}")
    except BaseException as e:  # noqa: B036 - SystemExit and KeyboardInterrupt are failures too
        finish("crash", f"{type(e).__name__} while {stage}\n{describe(e)}")

    try:
        array = asarray(value)
    except MemoryError as e:
        finish("memory", f"MemoryError converting the return value\n{describe(e)}")
    except BaseException as e:  # noqa: B036
        finish("invalid_output", f"the return value is not an array ({type(e).__name__}: {e})")
    if array.dtype.kind not in NUMERIC_KINDS:
        finish("invalid_output", f"the return value is not numeric: {type(value).__name__} "
                                 f"gives an array of dtype {array.dtype}")
    if array.nbytes > call["max_bytes"]:
        finish("invalid_output", f"the return value has {array.nbytes} bytes, more than the "
                                 f"limit of {call['max_bytes']}")
    try:
        save("result.npy", array, allow_pickle=False)
    except MemoryError as e:
        finish("memory", f"MemoryError saving the return value\n{describe(e)}")
    except BaseException as e:  # noqa: B036 - e.g. EFBIG from the file-size limit
        finish("invalid_output", f"cannot save the return value: {type(e).__name__}: {e}")
    finish("ok")


if __name__ == "__main__":
    try:
        main()
    except MemoryError:
        finish("memory", "MemoryError in the harness (memory limit too small?)")

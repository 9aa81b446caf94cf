"""Stand-ins for the two names problem folders import from their tools, copied into the sandbox
beside the folder: `openevolve.evaluation_result.EvaluationResult` and
`shinka.core.run_shinka_eval`. Written here from those tools' documented behaviour, so a folder
runs unchanged without either tool installed (and without their network clients).

The *_for_*.py files are evaluators that `discover export --format` writes into a folder
converted to the other tool's shape: each calls the folder's own evaluator.
"""

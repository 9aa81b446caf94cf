from environments.trimul.configs import BENCHMARKS, TESTS, Spec, recheck_set, reduced
from environments.trimul.env import PROGRAMS, RECORDS_US, TriMulEnvironment, program_source
from environments.trimul.reference import check_output, generate_input, mix, reference_kernel

__all__ = ["BENCHMARKS", "PROGRAMS", "RECORDS_US", "Spec", "TESTS", "TriMulEnvironment",
           "check_output", "generate_input", "mix", "program_source", "recheck_set", "reduced",
           "reference_kernel"]

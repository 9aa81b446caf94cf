"""Settings for the whole test session."""

import signal

import pytest

# A non-interactive shell starts a background job (`cmd &`, nohup) with SIGINT ignored, and every
# child inherits that: the tests that stop a run or a server with Ctrl-C (SIGINT) would then wait
# out their timeouts while the child runs on. A handler (unlike SIG_IGN) is reset to the default
# in each child at exec, so the children see Ctrl-C as a user's terminal sends it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def embedded_policy():
    """The embedded model behind the transformers backend, loaded once for the whole session.
    Tests that only sample share it and put back any setting they change; a test that trains
    (a learner wraps the model in LoRA) makes its own."""
    from discover.backends.hf import HFPolicy

    return HFPolicy(model="smollm2", threads=2, batch_size=8)

"""Every System the tests build runs the invariant checker (epcsim.kernel.check) after each
public call: a broken invariant fails the test that caused it, wherever it is."""

import os

os.environ.setdefault("EPCSIM_CHECK", "1")

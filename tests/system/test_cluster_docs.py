"""docs/operations.md lists every flag and environment variable that `dais master`, `dais
worker` and `dais run` accept (their --help is the source of truth)."""

import os
import re
import subprocess

from conftest import DAIS_BIN, REPO


def help_names(cmd):
    out = subprocess.run([DAIS_BIN, cmd, "--help"], capture_output=True, text=True,
                         timeout=10).stdout
    flags = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][a-z0-9-]*)", out, re.M))
    envs = set(re.findall(r"\b(DAIS_[A-Z0-9_]+)\b", out))
    return flags, envs


def test_operations_lists_every_flag_and_variable():
    with open(os.path.join(REPO, "docs", "operations.md"), encoding="utf-8") as f:
        doc = f.read()
    for cmd in ("master", "worker", "run"):
        flags, envs = help_names(cmd)
        assert len(flags) >= 5, (cmd, flags)
        missing = sorted(n for n in flags | envs if f"`{n}" not in doc)
        assert not missing, f"docs/operations.md lacks {cmd} options: {missing}"

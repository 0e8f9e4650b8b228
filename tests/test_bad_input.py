"""Bad input, by kind: every case is one ``theorylab: error: ...`` line naming the field, exit 2, nothing stored.

Each kind has its Python-level test (a one-line ConfigError) and its CLI test through ``refused``, which
checks the whole contract: exit code 2, nothing on stdout, one error line containing ``needle`` on stderr,
and no run in the store.
"""

from __future__ import annotations

import pytest

from theorylab.config import load_file
from theorylab.errors import ConfigError

TINY = ["task.p=11", "model.d_model=16", "model.n_heads=2", "model.d_mlp=32", "train.steps=2",
        "train.eval_every=1"]


def refused(cli, store, *args, needle: str) -> str:
    """Run the CLI and check the bad-input contract; return the error line."""
    rc, out, err = cli(*args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (rc, out, err)
    assert out == "", out
    assert len(lines) == 1 and lines[0].startswith("theorylab: error: "), err
    assert lines[0] != "theorylab: error: " and needle in lines[0], err
    assert not (store.root / "runs").exists()
    if store.db_path.exists():
        assert store.list_runs() == []
    return lines[0]


def one_line_config_error(fn, *args, match: str, **kwargs) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- 1. config files that are not UTF-8


@pytest.mark.parametrize("suffix", ["yaml", "json"])
@pytest.mark.parametrize("content", [
    bytes(range(256)),  # random bytes, invalid UTF-8 from the first high byte
    "model: {d_model: 16}  # réglé à la main\n".encode("latin-1"),  # latin-1 with non-ASCII
])
def test_config_file_not_utf8(tmp_path, cli, store, suffix, content):
    p = tmp_path / f"c.{suffix}"
    p.write_bytes(content)
    msg = one_line_config_error(load_file, p, match="not UTF-8")
    assert str(p) in msg and "byte" in msg
    refused(cli, store, "train", "modular", "--config", p, needle="not UTF-8")


def test_config_file_utf8_with_bom_reads(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes("\ufefftask: {name: modular, p: 13}  # réglé\n".encode("utf-8"))
    assert load_file(p) == {"task": {"name": "modular", "p": 13}}


def test_config_path_that_is_a_folder_or_unreadable(tmp_path, cli, store):
    refused(cli, store, "train", "modular", "--config", tmp_path, needle="no such file")

"""Packages the repository's wire contract (`schemas/*.avsc`) with the client at build time.

The schemas live once, in the repository's `schemas/` folder, which driftwatch itself embeds;
keeping a second copy under `src/` would let the two drift apart. So the wheel build copies them
into `driftwatch_client/schemas/`, and an sdist carries them in `schemas/` beside this file,
where a build from the sdist (no repository around it) finds them.
(`tests/test_schemas.py` checks the installed copies equal the repository's.)
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
CANDIDATES = [HERE.parent.parent / "schemas", HERE / "schemas"]


def schema_dir() -> Path:
    for d in CANDIDATES:
        if sorted(d.glob("*.avsc")):
            return d
    raise SystemExit(
        "driftwatch-client: no schemas found in "
        + " or ".join(str(d) for d in CANDIDATES)
        + ": build from the driftwatch repository (clients/python) or from its sdist"
    )


def copy_schemas(into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for f in sorted(schema_dir().glob("*.avsc")):
        shutil.copyfile(f, into / f.name)


class BuildPyWithSchemas(build_py):
    def run(self):
        super().run()
        copy_schemas(Path(self.build_lib) / "driftwatch_client" / "schemas")


class SdistWithSchemas(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        copy_schemas(Path(base_dir) / "schemas")


setup(cmdclass={"build_py": BuildPyWithSchemas, "sdist": SdistWithSchemas})

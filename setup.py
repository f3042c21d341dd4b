"""Build hook: ship the root-level schema.sql and bot.toml inside the package.

schema.sql is the single source of the DDL and lives at the repository root
where people read it; an installed (non-editable) tinybot must still find it,
so the build copies both files into the built package.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent
SHIPPED = ("schema.sql", "bot.toml")


class build_py_with_data(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "tinybot"
        target.mkdir(parents=True, exist_ok=True)
        for name in SHIPPED:
            shutil.copyfile(ROOT / name, target / name)


setup(cmdclass={"build_py": build_py_with_data})

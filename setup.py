"""The wheel's build step: the folders InferWatch reads at run time (the dbt project, the
validation suites, the DAGs, the Superset assets and the Airflow plugin) are copied into the
package as ``inferwatch/bundled/``, so an installed ``inferwatch`` (``pip install .``) finds them
there (inferwatch.config.BUNDLE_DIR). The checkout keeps its top-level layout; an editable
install reads the folders in place. Everything else is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: Source (relative to the checkout) → destination (relative to inferwatch/bundled/).
BUNDLED = {
    "dbt_project": "dbt_project",
    "expectations": "expectations",
    "dags": "dags",
    "superset": "superset",
    "plugins/inferwatch_data_docs.py": "plugins/inferwatch_data_docs.py",
}
# What dbt or Python leave in those folders when run from the checkout.
IGNORED = shutil.ignore_patterns("target", "logs", "dbt_packages", "__pycache__", "*.pyc")


class BuildPyWithBundle(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        bundle = Path(self.build_lib) / "inferwatch" / "bundled"
        shutil.rmtree(bundle, ignore_errors=True)  # no file deleted from the checkout survives
        for source, target in BUNDLED.items():
            src, dst = ROOT / source, bundle / target
            if not src.exists():
                raise FileNotFoundError(f"{src} is missing: build the wheel from a checkout")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=IGNORED)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithBundle})

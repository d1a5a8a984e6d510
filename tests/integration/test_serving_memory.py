"""The scoring service's memory: what it imports and loads (issue 11: the service in <= 150 MiB)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from tenure.store import Cutoff, FeatureSnapshot, parse_cutoff

ROOT = Path(__file__).resolve().parents[2]

LOAD_SCORING = """
import json, sys
from pathlib import Path
import services.scoring.__main__
from services.core.models import ModelSet
from services.scoring.engine import Scorer
from tenure.settings import ServiceSettings
imported = "pandas" in sys.modules
settings = ServiceSettings(models_dir=Path(sys.argv[1]))
scorer = Scorer.load(settings.models_dir, settings)
models = ModelSet.load(settings.models_dir, settings)
shared = [name for name, m in scorer.predictor.models.items()
          if name in models.models and models.models[name].model.session is m.session]
print(json.dumps({"at_import": imported, "after_load": "pandas" in sys.modules, "shared": shared,
                  "cutoff": scorer.snapshot.cutoff.isoformat()}))
"""


def test_scoring_serves_without_pandas_and_loads_each_model_once(trained_repo: Path) -> None:
    """A fresh process: importing the scoring service and loading its models and snapshot does not
    import pandas (~70 MiB with pyarrow), and ModelInfer shares Score/Predict's onnxruntime sessions."""
    out = subprocess.run([sys.executable, "-c", LOAD_SCORING, str(trained_repo)], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["at_import"] is False and got["after_load"] is False
    assert "churn" in got["shared"]
    assert got["cutoff"] == FeatureSnapshot.load_latest(trained_repo).cutoff.isoformat()


def test_cutoff_reads_like_a_pandas_timestamp() -> None:
    """The snapshot cutoff read without pandas prints, dates and converts to epoch seconds as
    pandas does (naive = UTC); what datetime cannot hold (nanoseconds) stays a pandas Timestamp."""
    for text in ("2026-01-01T00:00:00", "2026-01-01", "2025-03-04T05:06:07.123456", "2025-03-04T05:06:07+02:00"):
        want, got = pd.Timestamp(text), parse_cutoff(text)
        assert isinstance(got, Cutoff)
        assert (got.isoformat(), got.date(), got.timestamp()) == (want.isoformat(), want.date(), want.timestamp())
    nanos = parse_cutoff("2025-03-04T05:06:07.123456789")
    assert isinstance(nanos, pd.Timestamp) and nanos.isoformat() == "2025-03-04T05:06:07.123456789"
    assert np.isfinite(parse_cutoff("2026-01-01").timestamp())

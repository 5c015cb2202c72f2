"""What ships in data_samples/: small, readable, and what the generators make today."""
from __future__ import annotations

from pathlib import Path

from dsvl_lab.data.jsonl import read_jsonl
from dsvl_lab.data.tasks import DETAILS, FAMILIES, generate_sample

DATA = Path(__file__).resolve().parents[1] / "data_samples"


def test_data_samples_stay_under_20_mb_besides_the_foundation_weights():
    """The foundation weights have their own limit (60 MB, tests/test_foundation.py)."""
    foundation = DATA / "foundation"
    total = sum(p.stat().st_size for p in DATA.rglob("*") if p.is_file() and foundation not in p.parents)
    assert total < 20 * 2**20, f"data_samples/ holds {total / 2**20:.1f} MB besides foundation/"


def test_shipped_samples_cover_every_family_and_detail_and_match_the_generators():
    shipped = read_jsonl(DATA / "tasks" / "samples.jsonl")
    kinds = {(s.family, s.detail) for s in shipped.samples}
    assert kinds == {(f, d) for f in FAMILIES for d in DETAILS}
    first = shipped.samples[0]
    again = generate_sample(first.family, first.seed, detail=first.detail, image_size=first.image.size[0])
    assert again.caption == first.caption
    assert [q.answer for q in again.qa] == [q.answer for q in first.qa]

"""A small invented corpus in MUSE's layout, for tests that cannot reach muse-bench/MUSE-News."""

from __future__ import annotations

import json
from pathlib import Path

FORGET = [
    "The harbour town of Velmora opened its floating library on Tuesday. Readers borrow books from barges "
    "moored along the quay, and the mayor, Ilse Brandt, said the fleet would grow to twelve boats by spring.",
    "Velmora's lighthouse keeper, Tomas Okafor, retired after forty years. He kept a logbook of every storm "
    "since 1984 and donated it to the floating library.",
    "A heron census on the Velmora marshes counted 312 birds, the highest number since records began.",
]
RETAIN1 = [
    "The mountain village of Ostrava Minor elected a new council. Its first decision was to repaint the "
    "cable car in the village colours of green and amber.",
    "Engineers in Calder Bay finished a tidal power station that supplies four hundred homes.",
    "The Calder Bay chess club won the regional cup after a final game that lasted nine hours.",
    "Farmers near Ostrava Minor harvested a record crop of blue potatoes this autumn.",
]
RETAIN2 = [
    "A bakery in Calder Bay sells bread shaped like lighthouses to raise money for the lifeboat crew.",
    "Ostrava Minor's school choir travelled abroad for the first time, singing in three cities.",
]
HOLDOUT = [
    "The desert city of Quillon installed solar awnings over its central market.",
    "Quillon's museum returned a bronze bell to the monastery it was taken from a century ago.",
]
VERBMEM = [
    {"prompt": "The harbour town of Velmora opened its floating library on Tuesday.",
     "gt": "Readers borrow books from barges moored along the quay."},
    {"prompt": "Velmora's lighthouse keeper, Tomas Okafor, retired after forty years.",
     "gt": "He kept a logbook of every storm since 1984."},
    {"prompt": "A heron census on the Velmora marshes counted",
     "gt": "312 birds, the highest number since records began."},
]
FORGET_QA = [
    {"question": "Who is the mayor of Velmora?", "answer": "Ilse Brandt"},
    {"question": "How many herons were counted on the Velmora marshes?", "answer": "312"},
    {"question": "Who kept the Velmora lighthouse?", "answer": "Tomas Okafor"},
]
RETAIN_QA = [
    {"question": "What colours is the Ostrava Minor cable car?", "answer": "green and amber"},
    {"question": "How many homes does the Calder Bay tidal station supply?", "answer": "four hundred"},
    {"question": "What crop did Ostrava Minor farmers harvest?", "answer": "blue potatoes"},
]
FORGET_QA_ICL = [
    {"question": "What does the Velmora library float on?", "answer": "barges"},
    {"question": "When did the floating library open?", "answer": "Tuesday"},
]
RETAIN_QA_ICL = [
    {"question": "Which club won the regional chess cup?", "answer": "the Calder Bay chess club"},
    {"question": "How long did the final chess game last?", "answer": "nine hours"},
]

SPLITS = {
    "raw/forget": [{"text": t} for t in FORGET],
    "raw/retain1": [{"text": t} for t in RETAIN1],
    "raw/retain2": [{"text": t} for t in RETAIN2],
    "raw/holdout": [{"text": t} for t in HOLDOUT],
    "verbmem/forget": VERBMEM,
    "knowmem/forget_qa": FORGET_QA,
    "knowmem/retain_qa": RETAIN_QA,
    "knowmem/forget_qa_icl": FORGET_QA_ICL,
    "knowmem/retain_qa_icl": RETAIN_QA_ICL,
    "privleak/forget": [{"text": t} for t in FORGET],
    "privleak/retain": [{"text": t} for t in RETAIN2],
    "privleak/holdout": [{"text": t} for t in HOLDOUT],
}


def write_muse_corpus(root: Path, corpus: str = "News") -> Path:
    """Write every split as ``root/muse/<corpus>/<config>/<split>.json`` (JSON Lines) and return ``root``."""
    for name, records in SPLITS.items():
        file = root / "muse" / corpus / f"{name}.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("".join(json.dumps(record) + "\n" for record in records))
    return root

"""Loading a split of a real data set: the files of a local folder, or a hub name through
`datasets`."""

from __future__ import annotations

from pathlib import Path

from reasoner.datafiles import SUFFIXES, read_rows
from reasoner.tasks import PackError


def split_files(folder: Path, names: tuple[str, ...], config_name: str | None = None) -> list[Path]:
    """The files of a split in a local folder: ``test.jsonl`` (or ``.json``, ``.csv``,
    ``.parquet``...), or the hub's shards ``test-00000-of-00002.parquet``, ``...-00001-...``,
    in the folder itself, in its ``config_name`` subfolder (GSM8K's ``main/``) or in ``data/``,
    as a hub snapshot lays them out. The first name with files wins."""
    places = [folder] + [folder / sub for sub in (config_name, "data") if sub and (folder / sub).is_dir()]
    for name in names:
        for place in places:
            whole = [place / f"{name}{suffix}" for suffix in SUFFIXES if (place / f"{name}{suffix}").is_file()]
            if whole:
                return whole[:1]
            shards = sorted(p for p in place.glob(f"{name}-*") if p.suffix in SUFFIXES and p.is_file())
            if shards:
                return shards
    return []


def load_split(
    source: str,
    split: str,
    *,
    pack: str,
    config_name: str | None = None,
    test_names: tuple[str, ...] = ("test",),
) -> list[dict]:
    if not source:
        raise PackError(f"pack {pack} needs task.source: a folder of data files or a hub name")
    if split not in ("train", "test"):
        raise PackError(f"pack {pack} has splits train and test, not {split!r}")
    folder = Path(source).expanduser()
    if folder.is_dir():
        names = (split,) if split == "train" else test_names
        files = split_files(folder, names, config_name)
        if not files:
            wanted = " or ".join(f"{n}.jsonl" for n in names)
            raise PackError(f"{folder}: no {wanted} (or .json, .csv, .parquet, hub shards) for pack {pack}")
        return [dict(row) for path in files for row in read_rows(path)]
    if source.startswith((".", "/", "~")):
        raise PackError(f"task.source {source} is not a folder")
    import datasets

    datasets.disable_progress_bars()  # "Generating train split" bars are noise in a phase's output
    data = datasets.load_dataset(source, config_name, split=split)  # a hub name the user chose
    return list(data)

"""Loading a split of a real data set through `datasets`: a local folder or a hub name."""

from __future__ import annotations

from pathlib import Path

from reasoner.tasks import PackError


def load_split(
    source: str,
    split: str,
    *,
    pack: str,
    config_name: str | None = None,
    test_names: tuple[str, ...] = ("test",),
) -> list[dict]:
    if not source:
        raise PackError(f"pack {pack} needs task.source: a folder of JSONL files or a hub name")
    if split not in ("train", "test"):
        raise PackError(f"pack {pack} has splits train and test, not {split!r}")
    import datasets

    datasets.disable_progress_bars()  # "Generating train split" bars are noise in a phase's output
    folder = Path(source).expanduser()
    if folder.is_dir():
        names = (split,) if split == "train" else test_names
        files = [folder / f"{n}.jsonl" for n in names if (folder / f"{n}.jsonl").exists()]
        if not files:
            raise PackError(f"{folder}: no {' or '.join(n + '.jsonl' for n in names)} for pack {pack}")
        try:
            data = datasets.load_dataset("json", data_files=str(files[0]), split="train")
        except Exception as err:  # datasets raises many kinds; name the file either way
            raise PackError(f"{files[0]}: cannot read as JSONL: {err}") from None
        return list(data)
    if source.startswith((".", "/", "~")):
        raise PackError(f"task.source {source} is not a folder")
    data = datasets.load_dataset(source, config_name, split=split)  # a hub name the user chose
    return list(data)

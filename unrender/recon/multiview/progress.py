"""A progress bar for training loops: iterations, loss, faces and ETA (rich)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainingProgress:
    """Context manager: ``with TrainingProgress("pass 1", total, start) as bar: bar.update(stats)``.

    ``stats`` is the dict a pass's ``step`` returns (``loss``, ``faces``); disabled bars cost nothing.
    """

    def __init__(self, title: str, total: int, start: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.title, self.total, self.start = title, total, start
        self._progress = None
        self._task = None

    def __enter__(self) -> "TrainingProgress":
        if self.enabled:
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                      TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[faces]} tris"),
                                      TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
            self._progress.__enter__()
            self._task = self._progress.add_task(self.title, total=self.total, completed=self.start, loss="-",
                                                 faces="-")
        return self

    def update(self, stats: dict) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, loss=f"{stats['loss']:.4f}", faces=stats.get("faces", "-"))

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

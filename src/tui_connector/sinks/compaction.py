"""Compacting a lake of files: a stream's runs of small batch files rewritten into larger ones,
on local disk or an object store, without losing or doubling a record wherever the process
dies.

A file is named by the lowest page position it holds; a checkpoint at position P covers the
files named below P, and a resume removes the files at P or past it. A merged file holds a run
of adjacent files named below P, in order, and takes the name of the lowest of them: it is
covered as they were, and kept by a resume. The checkpoint also counts its files (a resume
refuses a lake that holds fewer, see engine.resume), so the count goes down with the merge.

For one stream, in this order (the caller does step 2):
1. each merged file is written aside, under a name that no reader, count or clean-up takes for
   a page file (`_tc_merged-page-<position><suffix>.part`); a crash leaves only these, which
   the next compaction removes;
2. the checkpoint's file count is set to what the lake holds after the merge, and committed:
   from then to the end the lake holds at least that many covered files;
3. the journal `<lake>/_tc_compaction/<source>.json` is written: which merged file replaces
   which page file, and which files it holds besides. From here on the merge rolls forward;
4. each merged file is moved over the lowest file of its run (a rename; a copy on an object
   store), then the others are removed: in between, the lake holds some records twice;
5. the journal is removed.
Whoever opens a source's files next (a run, before it counts, cleans or reads them, or the next
compaction) first finishes a journal it finds: steps 4 and 5 can be repeated, so a crash
during them, or during their repetition, is finished the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from tui_connector import failpoints
from tui_connector.sinks import LakeError
from tui_connector.sinks.files import covered, fsync_directory, positions
from tui_connector.sinks.storage import store_reason

JOURNALS = "_tc_compaction"
MERGED_PREFIX = "_tc_merged-"
MERGED_SUFFIX = ".part"
# Merged files grow to about this size: large enough that a reader opens few files, small
# enough to rewrite quickly.
DEFAULT_TARGET_SIZE = 128 * 1024 * 1024
# A merged Parquet file's row groups: the Arrow data gathered before it is written out.
_ROW_GROUP_BYTES = 64 * 1024 * 1024


def journal_path(source: str) -> str:
    return f"{JOURNALS}/{source}.json"


# -- the stores --------------------------------------------------------------------------------


class LakeFiles(Protocol):
    """The file operations compaction needs, under a lake's root (paths relative, with /)."""

    where: str  # the root, as messages show it

    def listing(self, directory: str) -> list[tuple[str, int]]:
        """The files directly in a directory, with their sizes (none when it is missing)."""
        ...

    def reader(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...

    def writer(self, path: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A new file, complete and durable once the block ends without an exception."""
        ...

    def read(self, path: str) -> bytes | None:
        """A small file's bytes; None when it does not exist."""
        ...

    def put(self, path: str, data: bytes) -> None:
        """A small file, written atomically and durably."""
        ...

    def replace(self, source: str, target: str) -> None:
        """Move a file over another. Raises FileNotFoundError when `source` is missing."""
        ...

    def delete(self, paths: Sequence[str]) -> None:
        """Remove files, durably; a missing one is no error."""
        ...


class LocalFiles:
    """A lake on local disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)

    def listing(self, directory: str) -> list[tuple[str, int]]:
        try:
            entries = os.scandir(self.root / directory)
        except FileNotFoundError:
            return []
        with entries:
            return [(entry.name, entry.stat().st_size) for entry in entries if entry.is_file()]

    @contextlib.contextmanager
    def reader(self, path: str) -> Iterator[IO[bytes]]:
        with open(self.root / path, "rb") as handle:
            yield handle

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[IO[bytes]]:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())

    def read(self, path: str) -> bytes | None:
        try:
            return (self.root / path).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, path: str, data: bytes) -> None:
        target = self.root / path
        temp = f"{path}.tmp"
        with self.writer(temp) as handle:
            handle.write(data)
        os.replace(self.root / temp, target)
        fsync_directory(target.parent)

    def replace(self, source: str, target: str) -> None:
        os.replace(self.root / source, self.root / target)
        fsync_directory((self.root / target).parent)

    def delete(self, paths: Sequence[str]) -> None:
        directories = set()
        for path in paths:
            (self.root / path).unlink(missing_ok=True)
            directories.add((self.root / path).parent)
        for directory in directories:
            fsync_directory(directory)


class ObjectFiles:
    """A lake on an object store, through obstore: a PUT (or a completed multipart upload)
    appears whole or not at all."""

    def __init__(self, url: str, store: Any) -> None:
        self.where = url
        self.store = store

    @classmethod
    def open(cls, url: str, options: Mapping[str, str]) -> ObjectFiles:
        from tui_connector.sinks.storage import open_store

        return cls(url, open_store(url, options))

    def listing(self, directory: str) -> list[tuple[str, int]]:
        import obstore

        prefix = f"{directory}/"
        listed = obstore.list_with_delimiter(self.store, prefix)
        return [(meta["path"][len(prefix) :], meta["size"]) for meta in listed["objects"]]

    @contextlib.contextmanager
    def reader(self, path: str) -> Iterator[IO[bytes]]:
        import obstore

        yield _ObjectReader(obstore.open_reader(self.store, path))  # type: ignore[misc]

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[IO[bytes]]:
        import obstore

        upload = obstore.open_writer(self.store, path)
        yield _ObjectWriter(upload)  # type: ignore[misc]
        upload.close()  # completes the upload: only now does the object exist

    def read(self, path: str) -> bytes | None:
        import obstore

        try:
            return bytes(obstore.get(self.store, path).bytes())
        except FileNotFoundError:
            return None

    def put(self, path: str, data: bytes) -> None:
        import obstore

        obstore.put(self.store, path, data)

    def replace(self, source: str, target: str) -> None:
        import obstore

        obstore.rename(self.store, source, target, overwrite=True)

    def delete(self, paths: Sequence[str]) -> None:
        import obstore

        if not paths:
            return
        try:
            obstore.delete(self.store, list(paths))
        except FileNotFoundError:  # stores that delete one by one say so for a missing one
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    obstore.delete(self.store, path)


class _ObjectReader:
    """An obstore reader as the file object pyarrow reads Parquet from (it wants `closed`)."""

    closed = False

    def __init__(self, file: Any) -> None:
        self._file = file

    def read(self, size: int | None = -1) -> bytes:
        return bytes(self._file.read(None if size is None or size < 0 else size))

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._file.seek(offset, whence))

    def tell(self) -> int:
        return int(self._file.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


class _ObjectWriter:
    """An obstore upload as the file object pyarrow writes Parquet to (it wants `tell`)."""

    closed = False

    def __init__(self, upload: Any) -> None:
        self._upload = upload
        self._written = 0

    def write(self, data: bytes) -> int:
        self._upload.write(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        """The upload completes when the writer's block ends."""

    def writable(self) -> bool:
        return True


def open_files(lake: str, options: Mapping[str, str]) -> LakeFiles:
    """The files of a lake: a directory, or an object store's URL."""
    from tui_connector.config.lake import is_object_store

    if is_object_store(lake):
        return ObjectFiles.open(lake, options)
    return LocalFiles(Path(lake))


# -- what merges with what -----------------------------------------------------------------------


@dataclass(frozen=True)
class PageFile:
    name: str
    position: int
    size: int


@dataclass
class Group:
    """Adjacent page files that become one."""

    pages: list[PageFile]
    schema: Any = None  # Parquet: the schema every file of the group fits


class Merging(Protocol):
    """How a format's files merge."""

    def groups(self, files: LakeFiles, directory: str, run: list[PageFile]) -> list[Group]:
        """A run of small files, split where its files cannot share one file."""
        ...

    def write(self, files: LakeFiles, directory: str, group: Group, out: IO[bytes]) -> None: ...


class LinesMerging:
    """JSON Lines: a merged file is its files' lines, one after the other."""

    def groups(self, files: LakeFiles, directory: str, run: list[PageFile]) -> list[Group]:
        return [Group(run)]

    def write(self, files: LakeFiles, directory: str, group: Group, out: IO[bytes]) -> None:
        for page in group.pages:
            with files.reader(f"{directory}/{page.name}") as handle:
                shutil.copyfileobj(handle, out)


class ParquetMerging:
    """Parquet: files whose columns agree (a column missing from some, or null-typed in some,
    is fine; one whose type differs is not) are rewritten as one, their rows in order."""

    def groups(self, files: LakeFiles, directory: str, run: list[PageFile]) -> list[Group]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: list[Group] = []
        current: list[tuple[PageFile, pa.Schema]] = []
        unified: pa.Schema | None = None
        for page in run:
            with files.reader(f"{directory}/{page.name}") as handle:
                schema = pq.read_schema(handle)
            candidate = _unified(unified, schema)
            if candidate is not None:
                # A schema that grew must still take the files already in the group.
                grew = unified is not None and not candidate.equals(unified)
                checked = [*(current if grew else ()), (page, schema)]
                if not all(_fits(earlier, candidate) for _, earlier in checked):
                    candidate = None
            if candidate is None:
                if current:
                    groups.append(Group([page for page, _ in current], unified))
                current, candidate = [], schema
            current.append((page, schema))
            unified = candidate
        if current:
            groups.append(Group([page for page, _ in current], unified))
        return groups

    def write(self, files: LakeFiles, directory: str, group: Group, out: IO[bytes]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = group.schema
        with pq.ParquetWriter(out, schema) as writer:
            gathered: list[pa.Table] = []
            size = 0
            for page in group.pages:
                with files.reader(f"{directory}/{page.name}") as handle:
                    for batch in pq.ParquetFile(handle).iter_batches():
                        table = _conformed(pa.Table.from_batches([batch]), schema)
                        gathered.append(table)
                        size += table.nbytes
                        if size >= _ROW_GROUP_BYTES:
                            writer.write_table(pa.concat_tables(gathered))
                            gathered, size = [], 0
            if gathered:
                writer.write_table(pa.concat_tables(gathered))


def _unified(schema: Any, other: Any) -> Any:
    """The schema both fit, or None when a column's type differs."""
    import pyarrow as pa

    if schema is None:
        return other
    try:
        return pa.unify_schemas([schema, other])
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def _fits(schema: Any, unified: Any) -> bool:
    """Whether a file's columns convert to the unified schema's without loss."""
    import pyarrow as pa

    try:
        _conformed(schema.empty_table(), unified)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return True


def _conformed(table: Any, schema: Any) -> Any:
    """A table with the schema's columns, in its order: missing ones null."""
    import pyarrow as pa

    columns = []
    for target in schema:
        if target.name in table.column_names:
            column = table.column(target.name)
            columns.append(column if column.type == target.type else column.cast(target.type))
        else:
            columns.append(pa.nulls(table.num_rows, target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def merging_for(suffix: str) -> Merging:
    return ParquetMerging() if suffix == ".parquet" else LinesMerging()


# -- one stream's compaction ---------------------------------------------------------------------


@dataclass(frozen=True)
class Merge:
    into: str  # the page file it replaces: the lowest of its run
    merged: str  # where it was written aside
    replaces: tuple[str, ...]  # the run's other files, removed once `into` holds them


@dataclass
class StreamCompaction:
    """One stream's merged files, written aside (step 1), ready to be swapped in."""

    directory: str  # `<source>/<partition>`, under the lake's root
    found: int  # the page files its checkpoint covers, before
    merges: list[Merge] = field(default_factory=list)

    @property
    def files_after(self) -> int:
        """The page files its checkpoint covers once the merges are in place."""
        return self.found - sum(len(merge.replaces) for merge in self.merges)


def _runs(pages: list[PageFile], target: int) -> Iterator[list[PageFile]]:
    """Adjacent files gathered until the next would take the run past `target` bytes."""
    run: list[PageFile] = []
    size = 0
    for page in pages:
        if run and size + page.size > target:
            yield run
            run, size = [], 0
        run.append(page)
        size += page.size
    if run:
        yield run


def prepare(
    files: LakeFiles,
    directory: str,
    suffix: str,
    below: int,
    also: frozenset[int] = frozenset(),
    target: int = DEFAULT_TARGET_SIZE,
    committed: int | None = None,
) -> StreamCompaction:
    """Step 1 for the stream whose files are in `directory`, whose checkpoint is at `below`
    (with the parallel pages `also` done above it) and counts `committed` files: merge the
    runs of its small files named below the checkpoint, each into a file written aside. Merges
    nothing when the lake holds fewer files than counted (the run says what is missing).
    Removes what an earlier compaction that died in its step 1 left."""
    listing = files.listing(directory)
    files.delete([f"{directory}/{name}" for name, _ in listing if name.startswith(MERGED_PREFIX)])
    sizes = dict(listing)
    pages = sorted(
        (PageFile(name, position, sizes[name]) for name, position in positions(sizes, suffix)),
        key=lambda page: page.position,
    )
    found = sum(1 for page in pages if covered(page.position, below, also))
    compaction = StreamCompaction(directory, found)
    if committed is not None and found < committed:
        return compaction
    merging = merging_for(suffix)
    for run in _runs([page for page in pages if page.position < below], target):
        if len(run) < 2:
            continue
        for group in merging.groups(files, directory, run):
            if len(group.pages) < 2:
                continue
            into = group.pages[0].name
            merged = f"{MERGED_PREFIX}{into}{MERGED_SUFFIX}"
            with files.writer(f"{directory}/{merged}") as out:
                merging.write(files, directory, group, out)
            replaces = tuple(page.name for page in group.pages[1:])
            compaction.merges.append(Merge(into, merged, replaces))
    return compaction


def publish(files: LakeFiles, source: str, compaction: StreamCompaction) -> None:
    """Steps 3 to 5, once the checkpoint counts `compaction.files_after` files."""
    failpoints.reached("compact.before_journal")
    journal = {"directory": compaction.directory, "merges": [asdict(m) for m in compaction.merges]}
    files.put(journal_path(source), json.dumps(journal).encode())
    _roll_forward(files, source, journal)


def finish_interrupted(files: LakeFiles, source: str) -> bool:
    """Finish a compaction of the source that died after its step 2; True if there was one."""
    data = files.read(journal_path(source))
    if data is None:
        return False
    _roll_forward(files, source, json.loads(data))
    return True


def _roll_forward(files: LakeFiles, source: str, journal: dict[str, Any]) -> None:
    directory = journal["directory"]
    for merge in journal["merges"]:
        # Missing: moved already, by the compaction that died or by an earlier repetition.
        with contextlib.suppress(FileNotFoundError):
            files.replace(f"{directory}/{merge['merged']}", f"{directory}/{merge['into']}")
        failpoints.reached("compact.after_replace")
        files.delete([f"{directory}/{name}" for name in merge["replaces"]])
    files.delete([journal_path(source)])


class Settling:
    """What a run does before it counts, cleans or reads a source's files: finish a compaction
    of them that a crash interrupted. Once per source and run, by the stream that asks first;
    the others wait for that one (two finishing it at once could remove a file that a stream
    wrote in between)."""

    def __init__(self, files: LakeFiles) -> None:
        self._files = files
        self._finishing: dict[str, asyncio.Future[bool]] = {}

    async def settle(self, source: str) -> None:
        """Raises LakeError."""
        finishing = self._finishing.get(source)
        if finishing is None:
            finishing = asyncio.ensure_future(
                asyncio.to_thread(finish_interrupted, self._files, source)
            )
            self._finishing[source] = finishing
        where = f"{self._files.where}/{source}"
        try:
            await asyncio.shield(finishing)
        except OSError as exc:
            raise LakeError(f"cannot finish compacting {where}: {exc.strerror or exc}") from None
        except Exception as exc:  # the store's own errors
            raise LakeError(f"cannot finish compacting {where}: {store_reason(exc)}") from None

    def forget(self) -> None:
        """A compaction may run before the next run."""
        self._finishing.clear()

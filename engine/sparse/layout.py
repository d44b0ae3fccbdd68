"""Chunk structure of one attention call: which chunks are keys, which are queries, who sees whom.

Both modes of the causal DiT reduce to the same description:

* **cached** (generation): keys = the cached chunks (sink + recent window, oldest first) followed
  by the current chunk; queries = the current chunk (the last key chunk); everything visible.
* **full sequence** (training): keys = queries = all chunks; chunk c sees chunks <= c
  (block-causal), optionally only the sink chunks plus the chunks inside a window of the most
  recent `window_frames` frames (counted up to the end of chunk c, its own frames included).

Visibility is per chunk, never per token: a tile never crosses a chunk, so tile masks follow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.sparse.tiles import TileShape, Tiling, build_tiling


@dataclass(frozen=True)
class ChunkLayout:
    """Key chunks (frame counts, token order), the query chunks among them, and visibility.

    `visible[i][j]`: query chunk i (= key chunk `query_chunks[i]`) may attend to key chunk j.
    The first `sink_chunks` key chunks are attention-sink chunks.
    """

    grid: tuple[int, int]  # (rows, cols) of one latent frame after patching
    key_frames: tuple[int, ...]  # latent frames of each key chunk, in key token order
    query_chunks: tuple[int, ...]  # key chunk index of each query chunk, in query token order
    visible: tuple[tuple[bool, ...], ...]  # [query chunks][key chunks]
    sink_chunks: int = 0

    def __post_init__(self) -> None:
        n = len(self.key_frames)
        if n == 0 or any(f < 1 for f in self.key_frames):
            raise ValueError(f"key chunks need >= 1 frame each, got {self.key_frames!r}")
        if not self.query_chunks or any(not 0 <= c < n for c in self.query_chunks):
            raise ValueError(f"query chunks {self.query_chunks!r} must index the {n} key chunks")
        if len(self.visible) != len(self.query_chunks) or any(len(r) != n for r in self.visible):
            raise ValueError("visible must be [len(query_chunks)][len(key_frames)]")
        for i, own in enumerate(self.query_chunks):
            if not self.visible[i][own]:
                raise ValueError(f"query chunk {i} must see its own key chunk {own}")
        if not 0 <= self.sink_chunks <= n:
            raise ValueError(f"sink_chunks {self.sink_chunks} outside [0, {n}]")

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def cached(
        cls,
        grid: tuple[int, int],
        cached_frames: Sequence[int],
        chunk_frames: int = 3,
        sink_chunks: int = 0,
    ) -> ChunkLayout:
        """Generation: the current chunk attends to the cached chunks and to itself.

        `cached_frames`: frames of each cached chunk, oldest first (sink chunks first); may be
        empty (the first chunk of a stream). `sink_chunks` counts the leading key chunks that
        are sinks, the current chunk included while the stream is still in its sink (e.g. 1
        for the very first chunk when the first chunk is the sink).
        """
        keys = (*(int(f) for f in cached_frames), int(chunk_frames))
        return cls(
            grid=(int(grid[0]), int(grid[1])),
            key_frames=keys,
            query_chunks=(len(keys) - 1,),
            visible=((True,) * len(keys),),
            sink_chunks=sink_chunks,
        )

    @classmethod
    def full_sequence(
        cls,
        grid: tuple[int, int],
        num_frames: int,
        chunk_frames: int = 3,
        window_frames: int | None = None,
        sink_chunks: int = 0,
    ) -> ChunkLayout:
        """Training: all chunks at once under the block-causal (optionally windowed) mask.

        Chunks hold `chunk_frames` frames (the last one fewer if `num_frames` does not divide).
        With `window_frames`, chunk j is visible to chunk c iff j <= c and (j is a sink chunk or
        j starts at or after end(c) - window_frames): the same set a rolling KV cache of
        `sink_frames + window_frames` frames in all (current chunk included, whole chunks
        evicted oldest first, sink kept) holds when chunk c is generated.
        """
        if num_frames < 1 or chunk_frames < 1:
            raise ValueError("num_frames and chunk_frames must be >= 1")
        frames = [chunk_frames] * (num_frames // chunk_frames)
        if num_frames % chunk_frames:
            frames.append(num_frames % chunk_frames)
        starts = [sum(frames[:j]) for j in range(len(frames))]
        rows = []
        for c in range(len(frames)):
            end = starts[c] + frames[c]
            row = []
            for j in range(len(frames)):
                ok = j <= c
                if ok and window_frames is not None and j >= sink_chunks:
                    ok = starts[j] >= end - window_frames
                row.append(ok)
            rows.append(tuple(row))
        return cls(
            grid=(int(grid[0]), int(grid[1])),
            key_frames=tuple(frames),
            query_chunks=tuple(range(len(frames))),
            visible=tuple(rows),
            sink_chunks=sink_chunks,
        )

    # -- derived -----------------------------------------------------------------------------

    @property
    def tokens_per_frame(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def query_frames(self) -> tuple[int, ...]:
        return tuple(self.key_frames[c] for c in self.query_chunks)

    @property
    def num_key_tokens(self) -> int:
        return sum(self.key_frames) * self.tokens_per_frame

    @property
    def num_query_tokens(self) -> int:
        return sum(self.query_frames) * self.tokens_per_frame

    def key_tiling(self, tile: TileShape, slot_size: int | None = None) -> Tiling:
        return build_tiling(self.key_frames, self.grid, tile, slot_size)

    def query_tiling(self, tile: TileShape, slot_size: int | None = None) -> Tiling:
        return build_tiling(self.query_frames, self.grid, tile, slot_size)

    def visible_key_chunks(self, query_chunk: int) -> tuple[int, ...]:
        return tuple(j for j, ok in enumerate(self.visible[query_chunk]) if ok)

    def all_visible(self, query_chunk: int) -> bool:
        return all(self.visible[query_chunk])

"""The retrieval engine: runs the sources of a config as asyncio tasks, and offers the
controls the front ends use. It never imports Textual.

- `run`: the Engine (its RunResult is the front ends' `facade.RunResult`);
- `source`: one source's controls, partition scheduling and parent -> child wiring;
- `stream`: one stream's fetch -> stage -> durable -> checkpoint loop (`StreamRun`);
- `resume`: where a stream starts, from its checkpoint or fresh;
- `gate`, `limits`: pause/stop, concurrency slots and loop pacing;
- `failures`: how failures become errors the operator reads.
"""

from tui_connector.collector import YOUNG_GENERATION_THRESHOLD
from tui_connector.engine.failures import StreamFailed
from tui_connector.engine.limits import LoopPacer, ResizableLimit
from tui_connector.engine.run import STOP_GRACE_S, Engine, RunResult
from tui_connector.engine.source import SourceRunner

__all__ = [
    "STOP_GRACE_S",
    "YOUNG_GENERATION_THRESHOLD",
    "Engine",
    "LoopPacer",
    "ResizableLimit",
    "RunResult",
    "SourceRunner",
    "StreamFailed",
]

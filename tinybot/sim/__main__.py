"""``python -m tinybot.sim``: the same as ``tinybot sim``."""

from ..cli.sim import sim_command

if __name__ == "__main__":
    sim_command(prog_name="python -m tinybot.sim")

"""What the tests share besides fixtures: configs, the simulator's fixtures (a pytest plugin), fakes of the
outside world (OpenAI, Telegram, an alert receiver), a headless browser, and the paths below."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
FIXTURES = TESTS / "fixtures"

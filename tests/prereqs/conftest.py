"""The board's browser fixtures (Chromium through Playwright), for test_board.py."""

from tests.board.conftest import board, browser, page, playwright_driver, server

__all__ = ["board", "browser", "page", "playwright_driver", "server"]

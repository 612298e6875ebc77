"""The board's browser fixtures (tests/board/conftest.py), for the History view's tests."""

from tests.board.conftest import board, browser, page, playwright_driver, server

__all__ = ["board", "browser", "page", "playwright_driver", "server"]

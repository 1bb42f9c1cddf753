"""Typed application state of the origin app."""

from __future__ import annotations

from aiohttp import web

from media.layout import Library
from media.signing import TokenChecker
from origin.config import OriginConfig
from origin.jobs import PackagingQueue
from origin.store import TitleStore

CONFIG = web.AppKey("config", OriginConfig)
LIBRARY = web.AppKey("library", Library)
STORE = web.AppKey("store", TitleStore)
QUEUE = web.AppKey("queue", PackagingQueue)
TOKEN = web.AppKey("token", str)
TOKENS = web.AppKey("tokens", TokenChecker)  # signed playback URLs

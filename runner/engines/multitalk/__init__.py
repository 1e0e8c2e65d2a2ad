"""The real MultiTalk engine (MeiGen MultiTalk on diffusers' Wan2.1); torch is imported only when it loads."""

from multitalk.runner.engines.multitalk.engine import MultiTalkEngine

__all__ = ["MultiTalkEngine"]

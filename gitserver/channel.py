"""Adapts a paramiko channel to what dulwich's protocol handlers read and write.

It also counts what a push sends, so a push past the configured limit fails
with a clear reason instead of filling the disk.
"""
import paramiko


class PushTooLarge(OSError):
    pass


class ChannelIO:
    def __init__(self, channel: paramiko.Channel, max_bytes: int | None = None):
        self.channel = channel
        self._file = channel.makefile("rb", -1)
        self.max_bytes = max_bytes
        self.received = 0

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self.received += len(data)
        if self.max_bytes is not None and self.received > self.max_bytes:
            raise PushTooLarge(
                f"push is larger than the limit of {self.max_bytes // (1024 * 1024)} MiB")
        return data

    def write(self, data: bytes) -> None:
        self.channel.sendall(data)

    def stderr(self, text: str) -> None:
        self.channel.sendall_stderr(text.encode("utf-8", "replace"))

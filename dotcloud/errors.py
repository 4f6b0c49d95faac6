"""User-facing errors: raised with a message a person can act on.

Edges translate them: an SSH command's exit status and one line, a push's
ref status, an HTTP error page. Anything not a DotcloudError is a bug and is
logged with its traceback, never shown raw to a user.
"""


class DotcloudError(Exception):
    """An error whose message is fit to show the user as one line."""

    exit_status = 1

    def __str__(self) -> str:
        return " ".join(str(self.args[0]).split()) if self.args else self.__class__.__name__


class InvalidName(DotcloudError):
    """A name (app, service, variable, domain, key) that fails validation."""


class NotFound(DotcloudError):
    """The thing does not exist, or the user may not see it."""


class PermissionDenied(DotcloudError):
    """The user is known but may not do this."""


class UsageError(DotcloudError):
    """Wrong command or arguments."""

    exit_status = 2


class BuildError(DotcloudError):
    """The build of a release failed; message says why."""


class DeployError(DotcloudError):
    """The deploy of a release failed; message says why."""

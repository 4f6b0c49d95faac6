"""The SSH command line: split as a shell would, looked up, parsed against its command."""
from hypothesis import given
from hypothesis import strategies as st

from dotcloud.errors import DotcloudError
from gitserver.commands import lookup, registry
from gitserver.commands.parse import parse, split_json
from gitserver.server import command_argv

COMMANDS = registry()
WORDS = sorted({w for c in COMMANDS for w in c.name.split()} |
               {"--json", "-f", "-n", "--lines", "--lines=5", "-n5", "--force", "--admin",
                "--timeout", "--", "'", '"', "\\", "git", "git-receive-pack", "upload-pack"})
word = st.one_of(st.sampled_from(WORDS), st.text(max_size=12),
                 st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True))


def front_end(raw: bytes) -> None:
    """What run_request and dispatch do before a command runs."""
    argv = command_argv(raw)
    argv, as_json = split_json(argv)
    if not argv:
        return
    command, words = lookup(COMMANDS, argv)
    parse(command, words, as_json)


@given(st.one_of(
    st.binary(max_size=200),
    st.lists(word, max_size=8).map(lambda ws: " ".join(ws).encode("utf-8", "surrogatepass")),
))
def test_any_command_line_is_parsed_or_refused_with_a_clear_error(raw):
    try:
        front_end(raw)
    except DotcloudError as exc:
        assert str(exc) and "\n" not in str(exc)

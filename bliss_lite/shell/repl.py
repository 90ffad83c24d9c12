"""The interactive shell: ptpython on top of gevent, as BLISS does.

`gevent.monkey.patch_all()` has run before this module is imported (the CLI does it), so
greenlets (motion tasks, displays) keep running while the prompt waits, and Ctrl-C raises
KeyboardInterrupt in the running command, which stops the motion and returns to the prompt.
"""
from __future__ import annotations

import sys

from ptpython.prompt_style import PromptStyle
from ptpython.repl import PythonRepl
from ptpython.utils import unindent_code
from ptpython.validator import PythonValidator

from bliss_lite.shell.errors import RED, RESET, colour_ok, short_message
from bliss_lite.shell.help import QUESTION, question


class SessionPrompt(PromptStyle):
    """`SESSION [n]: ` like BLISS, numbered with the statement index."""

    def __init__(self, repl, session_name):
        self.repl = repl
        self.session_name = session_name

    def in_prompt(self):
        return [("class:in", f"{self.session_name} "), ("class:in.number", f"[{self.repl.current_statement_index}]"),
                ("class:in", ": ")]

    def in2_prompt(self, width):
        return [("class:in", "...: ".rjust(width))]

    def out_prompt(self):
        return [("class:out", "")]


class SessionValidator(PythonValidator):
    """Python syntax, and `name?` (help on name)."""

    def validate(self, document):
        if QUESTION.match(document.text):
            return
        super().validate(document)


class SessionRepl(PythonRepl):
    """Shows `__info__()` for objects that have it (axes, groups, counters), repr otherwise;
    an error as one line (the traceback is kept for `last_error()`); `name?` as help(name).

    The prompt runs in the main greenlet (ptpython runs it in a thread by default): with
    gevent, that "thread" is a greenlet whose event loop can outlive the prompt and catch the
    Ctrl-C meant for the command. In the main greenlet, the patched selector still lets other
    greenlets run while the prompt waits.
    """

    def read(self):
        while True:
            try:
                text = self.app.run(in_thread=False)
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh line, as ptpython does
                self.default_buffer.reset()
                continue
            if text.lstrip().startswith("\x1a"):
                raise EOFError
            if text and not text.isspace():
                return question(text) or unindent_code(text)

    def _handle_exception(self, e):
        """One line, red on a colour terminal; the traceback goes to the session's ErrorLog."""
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        self.errors.record(e)
        text = short_message(e, self.get_globals())
        if not self._hinted:
            text += "  (last_error() shows the traceback)"
            self._hinted = True
        output = self.app.output
        if colour_ok(sys.stdout):
            output.write_raw(f"{RED}{text}{RESET}")
        else:
            output.write(text)
        output.write("\r\n")
        output.flush()

    def _show_result(self, result):
        info = getattr(result, "__info__", None)
        if callable(info) and not isinstance(result, type):
            self.app.output.write(info().replace("\n", "\r\n") + "\r\n")
            self.app.output.flush()
            return
        super()._show_result(result)


def run_shell(session_name, namespace, history_file, errors):
    repl = SessionRepl(get_globals=lambda: namespace, get_locals=lambda: namespace,
                       history_filename=str(history_file), _validator=SessionValidator())
    repl.errors, repl._hinted = errors, False
    repl.all_prompt_styles["session"] = SessionPrompt(repl, session_name)
    repl.prompt_style = "session"
    repl.confirm_exit = False
    repl.show_status_bar = False
    repl.insert_blank_line_after_output = False
    repl.enable_output_formatting = False
    repl.current_statement_index = 1
    repl.terminal_title = f"bliss_lite: {session_name}"
    repl.run()

"""The seed chapter ("Asynchronous and Atomic Operations") run as a doctest against a real
cluster, read at test time from ../shared/seeds/000_86f19e42ad947120.txt (or
$HYPERDEX_SEED_CHAPTER).

Only the adaptations that Python 3 and the test environment force are made; each is listed
here and applied in ``adapt``/``ValueChecker``:

1. Python 2's ``print "..." % x`` becomes ``print("..." % x)``.
2. The chapter's coordinator port 1982 becomes the test cluster's port.
3. Printed results are compared as Python values, not as text: the chapter's Python 2
   printed dicts and sets in hash order and sets as ``set([...])`` (which Python 3 still
   evaluates), so both sides are evaluated and compared with ``==``.
4. A printed bare string (the chapter shows ``->some string`` where a Python 3 session
   shows ``'->some string'``) is compared with the string's value.
5. Object reprs (``<hyperclient.DeferredFromAttrs object at ...>``) match up to the address.
6. The first ``.. todo::`` block is not run: it creates ``userlocks``, which the chapter
   creates again later (running it would make that second ``add_space`` fail). The last
   ``.. todo::`` block, the chapter's own cleanup, is run.
"""

import doctest
import os
import re

import hyperclient
from hyperdex.admin import Admin
from hyperdex.client import Document

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SEED = os.path.join(HERE, "..", "..", "..", "shared", "seeds", "000_86f19e42ad947120.txt")


def read_chapter():
    path = os.environ.get("HYPERDEX_SEED_CHAPTER", DEFAULT_SEED)
    with open(path) as f:
        return f.read()


def extract(chapter):
    """The chapter's sessions as (todo_block_number or None, [lines]) in order."""
    blocks = []
    todo = None
    todos = 0
    todo_indent = None
    for raw in chapter.splitlines():
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if stripped.startswith(".. todo::"):
            todos += 1
            todo = todos
            todo_indent = indent
            continue
        if todo is not None and stripped and indent <= todo_indent:
            todo = None
        if stripped.startswith(">>>") or stripped.startswith("..."):
            blocks.append((todo, stripped))
        elif stripped and blocks and not stripped.startswith(".."):
            # An output line right after a statement (or another output line).
            if blocks[-1][1] is not None and not raw.startswith(".. "):
                blocks.append((todo, "OUT:" + stripped))
        else:
            blocks.append((todo, None))
    return blocks, todos


def adapt(chapter, port):
    """The doctest text: statements and expected outputs, adapted (see the module docs)."""
    blocks, todos = extract(chapter)
    lines = []
    in_session = False
    for todo, line in blocks:
        if todo == 1:
            continue
        if line is None:
            in_session = False
            continue
        if line.startswith("OUT:"):
            if in_session:
                lines.append(line[4:])
            continue
        in_session = True
        line = line.replace("1982", str(port))
        m = re.match(r'^(>>> )print (".*)$', line)
        if m:
            line = "%sprint(%s)" % (m.group(1), m.group(2))
        if line == "...":
            line = "... "
        lines.append(line)
    return "\n".join(lines) + "\n"


class ValueChecker(doctest.OutputChecker):
    def check_output(self, want, got, optionflags):
        if doctest.OutputChecker.check_output(self, want, got, optionflags | doctest.ELLIPSIS):
            return True
        scope = {"Document": Document}
        try:
            return eval(want, scope) == eval(got, scope)
        except Exception:
            pass
        try:
            return eval(got, scope) == want.strip()
        except Exception:
            return False


def test_the_seed_chapter_runs_unchanged_but_for_python_3(cluster):
    host, port = cluster
    admin = Admin(host, port)
    for leftover in ("friendlists", "userlocks", "alldatatypes", "rt"):
        if leftover in admin.list_spaces():
            admin.rm_space(leftover)
    text = adapt(read_chapter(), port)
    test = doctest.DocTestParser().get_doctest(text, {}, "seed_chapter", "seed", 0)
    assert len(test.examples) > 80, "the chapter's sessions were found"
    printed = sum(1 for e in test.examples if e.want)
    assert printed >= 55, "the chapter's printed results are checked (%d)" % printed
    runner = doctest.DocTestRunner(checker=ValueChecker(), optionflags=doctest.ELLIPSIS)
    runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0, "%d of %d examples differ from the chapter" % (results.failed, results.attempted)
    admin.rm_space("alldatatypes")
    assert hyperclient.Client is not None

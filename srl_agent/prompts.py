"""The text the policy sees: one system prompt for SRL, RLVR and evaluation alike."""

from __future__ import annotations

SYSTEM_PROMPT = """\
You are a software engineer fixing an issue in the repository at /testbed. You act through tools.

Tools:
- bash: run one shell command. Parameters: command.
- str_replace_editor: view, create and edit files. Parameters: command (view | create | str_replace | \
insert | undo_edit), path (absolute), file_text (create), old_str and new_str (str_replace: old_str must \
occur exactly once), insert_line and new_str (insert after that line), view_range ([start, end], view).
- submit: finish and hand in the changes you made. No parameters.

In every reply, first think step by step inside <think>...</think>, then give exactly one tool call:
<function=TOOL>
<parameter=NAME>VALUE</parameter>
</function>"""

ISSUE_TEMPLATE = """\
Fix the following issue in the repository at /testbed.

<issue>
{issue}
</issue>"""

OMITTED_TEMPLATE = "[{n} earlier step(s) omitted]"

# The task turn of the bundled expert trajectories (SWE-smith message format: the issue sits in
# <pr_description>, which the readers extract).
EXPERT_TASK_TEMPLATE = """\
<uploaded_files>
/testbed
</uploaded_files>
The repository in /testbed has an open issue:

<pr_description>
{issue}
</pr_description>

Change the non-test files in /testbed so that the issue is resolved, check your change, then submit."""

# The environment's answer to a malformed turn in an RLVR episode (the turn ran no tool).
FORMAT_ERROR_TEMPLATE = """\
Your last output broke the format ({reason}): {message}. Answer with your reasoning in \
<think>...</think> followed by exactly one tool call."""

"""nbgrader settings for k8s-netlabs (loaded by every `nbgrader` command run from this folder).

The course layout maps onto nbgrader's directories: `solutions/<lab>/` is the source
(instructor) version, `labs/<lab>/` the release (student) version; assignment ids are the lab
folder names (`01-netns-veth`). Each setting below was chosen because real courses get bitten
without it; `tests/test_pipeline_config.py` checks that they hold.
"""

import os

c = get_config()  # type: ignore[name-defined]  # noqa: F821  (injected by traitlets)

# --- layout --------------------------------------------------------------------------------
# The course root is the folder holding this file, whatever the current directory is; the
# round-trip tests copy this file into a temporary course folder and get the same layout.
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"
c.CourseDirectory.course_id = "k8s-netlabs"
# Do not copy notebook checkpoints or caches into release or feedback folders.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback"]

# --- one kernel name everywhere --------------------------------------------------------------
# Every source notebook declares the `python3` kernel; autograde overwrites whatever kernelspec
# a submission carries with the source's (OverwriteKernelspec), and the executor is pinned too.
c.Execute.kernel_name = "python3"

# --- execution: bounded, and verdicts from outside the student's kernel -----------------------
# The slowest check (a handful of probes at <= 10 s each) stays well under 60 s. A cell that
# runs longer is interrupted and gets a `CellTimeoutError` output (scored 0); grading goes on.
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
c.Execute.startup_timeout = 60
# grader.executor.VerifyingExecute re-runs each check from the grading process (not from the
# student's kernel) right after its cell ran, and replaces the cell's outputs with the verdict.
c.Autograde.autograde_preprocessors = [
    "grader.executor.VerifyingExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]

# --- submissions that differ from the release -------------------------------------------------
# A student who deletes a check cell still gets it graded (added back from the gradebook).
c.OverwriteCells.add_missing_cells = True

# --- release notebooks -------------------------------------------------------------------------
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Keep feedback readable: long outputs (packet dumps) are cut, not dropped.
c.LimitOutput.max_lines = 200

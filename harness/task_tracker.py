"""The demo application: a task tracker for the "Conference Launch Desk", kept in SQLite.

Its database lives on the worker (the trusted side); the agent changes it only
through the function tools below, and moving a task to DONE waits for a person's
approval. Each operation opens its own connection, so the tools may run in
worker threads concurrently; every write sets a value, so running a call again
after a worker crash leaves the same state.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

from pydantic import BaseModel

from harness.function_tools import FunctionTool, ToolContext, function_tool

if TYPE_CHECKING:
    from harness.agent_dispatch import AgentDispatch

TaskStatus = Literal["TODO", "IN_PROGRESS", "DONE"]
STATUSES: tuple[str, ...] = get_args(TaskStatus)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS people (
    name TEXT PRIMARY KEY,
    skills TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    assignee TEXT REFERENCES people(name),
    -- the agent run working on the task, when its assignee is an agent
    run TEXT
);
"""

SEED_PEOPLE: list[tuple[str, str]] = [
    ("Program Editor", "writing, editing, abstracts, speakers"),
    ("Asset Producer", "video, design, audio, slides"),
    ("Logistics Lead", "venues, vendors, travel, schedules"),
    ("Press Officer", "press, writing, social media"),
]
SEED_TASKS: list[tuple[str, TaskStatus, str | None]] = [
    ("Draft the keynote abstract", "TODO", "Program Editor"),
    ("Produce the launch video", "IN_PROGRESS", "Asset Producer"),
    ("Book the AV crew for the main stage", "TODO", None),
    ("Publish the speaker lineup", "TODO", None),
    ("Send the press kit to the media list", "TODO", "Press Officer"),
]


class Task(BaseModel):
    id: int
    title: str
    status: TaskStatus
    assignee: str | None
    run: str | None = None


class UnknownTask(LookupError):
    pass


class UnknownPerson(LookupError):
    pass


class TaskTracker:
    """The tracker's state in the SQLite file `db_path`; created and seeded when new."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
            if "run" not in columns:  # a database from before agents took tasks
                db.execute("ALTER TABLE tasks ADD COLUMN run TEXT")
            if db.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 0:
                db.executemany("INSERT INTO people (name, skills) VALUES (?, ?)", SEED_PEOPLE)
                db.executemany("INSERT INTO tasks (title, status, assignee) VALUES (?, ?, ?)", SEED_TASKS)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.db_path, timeout=10)) as db, db:
            db.execute("PRAGMA foreign_keys = ON")
            yield db

    def tasks(self) -> list[Task]:
        with self._transaction() as db:
            rows = db.execute("SELECT id, title, status, assignee, run FROM tasks ORDER BY id").fetchall()
        return [Task(id=row[0], title=row[1], status=row[2], assignee=row[3], run=row[4]) for row in rows]

    def task(self, task_id: int) -> Task:
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, title, status, assignee, run FROM tasks WHERE id = ?", (task_id,)
            ).fetchone()
        if row is None:
            raise UnknownTask(f"there is no task {task_id}; list_tasks shows the tasks")
        return Task(id=row[0], title=row[1], status=row[2], assignee=row[3], run=row[4])

    def set_run(self, task_id: int, run: str | None) -> Task:
        with self._transaction() as db:
            db.execute("UPDATE tasks SET run = ? WHERE id = ?", (run, task_id))
        return self.task(task_id)

    def set_status(self, task_id: int, status: TaskStatus) -> Task:
        with self._transaction() as db:
            if db.execute("UPDATE tasks SET status = ? WHERE id = ?", (status, task_id)).rowcount == 0:
                raise UnknownTask(f"there is no task {task_id}; list_tasks shows the tasks")
        return self.task(task_id)

    def set_assignee(self, task_id: int, assignee: str) -> Task:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM people WHERE name = ?", (assignee,)).fetchone() is None:
                raise UnknownPerson(
                    f"there is no person named {assignee!r}; search_assignees finds people by skill"
                )
            if db.execute("UPDATE tasks SET assignee = ? WHERE id = ?", (assignee, task_id)).rowcount == 0:
                raise UnknownTask(f"there is no task {task_id}; list_tasks shows the tasks")
        return self.task(task_id)

    def people_with_skill(self, skill: str) -> list[str]:
        """Names of the people whose skills mention `skill` (case-insensitive)."""
        needle = skill.strip().lower()
        with self._transaction() as db:
            rows = db.execute("SELECT name, skills FROM people ORDER BY name").fetchall()
        return [name for name, skills in rows if needle in skills.lower()]


def tracker_tools(tracker: TaskTracker, dispatch: AgentDispatch | None = None) -> list[FunctionTool]:
    """The tracker's function tools, bound to `tracker`; moving a task to DONE needs approval.

    With `dispatch`, assigning a task to a person who is an agent starts that agent's run on the
    assigning run's workspace, and the task records the run.
    """

    @function_tool(needs_approval=lambda args: args.status == "DONE")
    def update_status(task_id: int, status: TaskStatus) -> Task:
        """Move a task to another status. Moving it to DONE waits for a person's approval.

        Args:
            task_id: The task's id, as list_tasks shows it.
            status: The new status: TODO, IN_PROGRESS or DONE.
        """
        return tracker.set_status(task_id, status)

    @function_tool
    async def update_assignee(task_id: int, assignee: str, context: ToolContext) -> Task:
        """Give a task to a person. When the person is an agent, its run starts on your workspace.

        Args:
            task_id: The task's id, as list_tasks shows it.
            assignee: The person's exact name, as search_assignees returns it.
        """
        task = await asyncio.to_thread(tracker.set_assignee, task_id, assignee)
        if dispatch is None:
            return task
        run = await dispatch.assign(assignee, f"Task {task.id}: {task.title}", f"task{task.id}", context)
        return await asyncio.to_thread(tracker.set_run, task_id, run)

    @function_tool
    def search_assignees(skill: str) -> list[str]:
        """Find the people who have a skill; returns their names.

        Args:
            skill: A skill to look for, e.g. "video" or "writing".
        """
        return tracker.people_with_skill(skill)

    @function_tool
    def list_tasks() -> list[Task]:
        """List every task of the Conference Launch Desk with its status and assignee."""
        return tracker.tasks()

    return [update_status, update_assignee, search_assignees, list_tasks]

"""The dashboard's keys: one binding table read by the footer, the help and the palette, and a
user's settings file that rebinds keys by id."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tui_connector.config import LoadedConfig
from tui_connector.demo.server import DemoServer
from tui_connector.engine import Engine
from tui_connector.in_process import InProcessRun
from tui_connector.tui.app import run_dashboard
from tui_connector.tui.commands import DashboardCommands
from tui_connector.tui.keys import KEYS_BY_ID
from tui_connector.tui.screens import HelpScreen, KeyList
from tui_connector.tui.settings import (
    SETTINGS_VARIABLE,
    SettingsError,
    load_settings,
    settings_path,
)

from .dashboard import dashboard_on, in_flight
from helpers import async_wait_for, engine_of

SIZE = (140, 40)


def sources_yaml(base_url: str, names: list[str]) -> str:
    pages = (
        "    records: data\n    pagination: {type: page_number, size_param: per_page, size: 10}\n"
    )
    return "sources:\n" + "".join(
        f"  {name}:\n    url: {base_url}/v1/pages/{name}\n{pages}" for name in names
    )


def write_settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        load_settings(path)
    return raised.value.messages


# -- the settings file -------------------------------------------------------------------------


def test_the_settings_file_is_found_by_variable_then_xdg_then_home(tmp_path: Path) -> None:
    named = tmp_path / "mine.yaml"
    assert settings_path({SETTINGS_VARIABLE: str(named)}) == named
    xdg = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert settings_path(xdg) == tmp_path / "tui-connector" / "settings.yaml"
    assert settings_path({}) == Path.home() / ".config" / "tui-connector" / "settings.yaml"


def test_no_settings_file_or_an_empty_one_means_the_default_keys(tmp_path: Path) -> None:
    assert load_settings(tmp_path / "absent.yaml").keymap == {}
    assert load_settings(write_settings(tmp_path, "")).keymap == {}


def test_a_keymap_is_read_as_written(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "keymap:\n  pause: x\n  quit: ctrl+q, X\n  help: '?'\n")
    assert load_settings(path).keymap == {"pause": "x", "quit": "ctrl+q, X", "help": "?"}


def test_an_unknown_binding_id_is_refused_at_its_place(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "keymap:\n  pause: x\n  puase: y\n")
    [message] = problems(path)
    assert message.startswith(f"{path}:3:3: keymap.puase: no key binding has this id; use one of ")
    assert "pause" in message and "quit" in message


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("ctrl+pp", "'ctrl+pp' is not a key"),
        ("control+p", "'control+p' is not a key"),
        ("x,,y", "'' is not a key"),
        ("~", "give the key(s) as text"),
        ("[x, y]", "give the key(s) as text"),
    ],
)
def test_a_value_that_is_not_a_key_is_refused_at_its_place(
    tmp_path: Path, value: str, shown: str
) -> None:
    path = write_settings(tmp_path, f"keymap:\n  retry: {value}\n")
    [message] = problems(path)
    assert message.startswith(f"{path}:2:3: keymap.retry: {shown}")
    assert "textual keys" in message  # how to find a key's name


def test_a_key_taken_from_another_binding_is_a_clash(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "keymap:\n  pause: f\n")
    assert problems(path) == [f"{path}:2:3: keymap.pause: f is also the key of filter-errors"]
    # Moving the other one away too is fine.
    both = write_settings(tmp_path, "keymap:\n  pause: f\n  filter-errors: g\n")
    assert load_settings(both).keymap == {"pause": "f", "filter-errors": "g"}


def test_unknown_settings_and_bad_yaml_are_refused_at_their_place(tmp_path: Path) -> None:
    path = write_settings(tmp_path, "keymap: {}\ntheme: dark\n")
    assert problems(path) == [f"{path}:2:1: theme: unknown setting; the settings file has: keymap"]
    path = write_settings(tmp_path, "keymap: [pause]\n")
    assert problems(path) == [f"{path}:1:9: keymap: must be a mapping"]
    path = write_settings(tmp_path, "keymap:\n  pause: x\n  pause: y\n")
    assert problems(path) == [f"{path}:3:3: keymap.pause: given twice"]
    path = write_settings(tmp_path, "keymap:\n  pause: [x\n")
    [message] = problems(path)
    assert message.startswith(f"{path}:3:1: YAML syntax error: ")


def test_wrong_settings_stop_the_dashboard_before_it_starts(
    tmp_path: Path,
    write_config: Callable[..., LoadedConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write_settings(tmp_path, "keymap:\n  nope: x\n")
    monkeypatch.setenv(SETTINGS_VARIABLE, str(path))
    config = write_config(sources_yaml("http://127.0.0.1:9", ["items"]))
    assert run_dashboard(InProcessRun(Engine(config))) == 2
    assert capsys.readouterr().err.startswith(f"{path}:2:3: keymap.nope: ")
    assert not config.state.exists()  # nothing was opened


# -- the keys in the running app ---------------------------------------------------------------


async def test_a_key_rebound_by_id_works_and_the_old_one_does_not(
    demo_server_factory: Callable[..., DemoServer],
    write_config: Callable[..., LoadedConfig],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SETTINGS_VARIABLE, str(write_settings(tmp_path, "keymap:\n  pause: x\n")))
    # Slow requests keep the process idle, so that Pilot types without waiting for it.
    server = demo_server_factory(records=1000, page_size=10, latency_ms=300)
    config = write_config(sources_yaml(server.url, ["alpha"]))
    app = dashboard_on(config, keymap=load_settings().keymap)
    async with app.run_test(size=SIZE) as pilot:
        engine = engine_of(app)
        await async_wait_for(lambda: "alpha" in engine.telemetry.sources, what="alpha")
        await pilot.press("p")
        assert not engine.is_paused("alpha")
        await pilot.press("x")
        assert engine.is_paused("alpha")
        # The screen names the key as the operator has it.
        await async_wait_for(
            lambda: "alpha: paused (x resumes)" in in_flight(app), what="the paused source"
        )
        await pilot.press("x")
        assert not engine.is_paused("alpha")
        shown = {
            (active.binding.key, active.binding.description)
            for active in app.screen.active_bindings.values()
            if active.binding.show
        }
        assert ("x", "Pause") in shown and ("p", "Pause") not in shown
        await pilot.press("q", "q")


async def test_the_help_and_the_palette_name_the_keys_of_the_binding_table(
    demo: DemoServer, write_config: Callable[..., LoadedConfig]
) -> None:
    keymap = {"pause-all": "ctrl+a", "quit": "X", "filter-errors": "g"}
    config = write_config(sources_yaml(demo.url, ["alpha"]))
    app = dashboard_on(config, keymap=keymap)
    async with app.run_test(size=SIZE) as pilot:
        await async_wait_for(app.all_finished, what="the run")
        table = {  # the keys of the footer's table as Textual binds them, keymap applied
            active.binding.id: active.binding.key_display or active.binding.key
            for active in app.screen.active_bindings.values()
            if active.binding.id is not None
        }
        assert table["pause-all"] == "ctrl+a" and table["quit"] == "X"
        footer = {id: key for id, key in table.items() if id in KEYS_BY_ID and KEYS_BY_ID[id].show}

        palette = DashboardCommands(app.screen)
        named = {
            match[1]
            for command in palette.commands()
            if (match := re.match(r"Like ([^\s:]+)", command.help))
        }
        assert {"ctrl+a", "X", "g"} <= named
        assert named <= set(table.values())

        await pilot.press("question_mark")
        await async_wait_for(lambda: isinstance(app.screen, HelpScreen), what="help")
        key_list = app.screen.query_one("#help-keys", KeyList)
        lines = [line.plain for line in key_list.lines(key_list.size.width) if line.plain.strip()]
        listed = {line.split()[0] for line in lines}
        assert set(footer.values()) <= listed
        assert {"P", "q", "f"}.isdisjoint(listed)
        text = " ".join(word for line in lines for word in line.split())
        assert "X again quits at once" in text
        assert app.errors_table.border_title == "Errors of all sources (g: selected source only)"
        await pilot.press("escape", "X", "X")

"""The asv dashboard's helpers: the offline rewrite of asv's page and the suite's thread
parameter. (The browser itself is exercised by .ci/asv_browser_check.sh.)"""
import os
import re

import pytest


@pytest.fixture(scope="module")
def publish_offline(load_script):
    return load_script("benchmarks/publish_offline.py")


@pytest.fixture(scope="module")
def threads(load_script):
    return load_script("benchmarks/_threads.py")


REMOTE = re.compile(r"<(?:script|link)\b[^>]*(?:src|href)=\"https?://")


def test_rewrite_points_every_cdn_tag_of_asvs_page_at_vendor(publish_offline):
    asv = pytest.importorskip("asv")
    with open(os.path.join(os.path.dirname(asv.__file__), "www", "index.html")) as f:
        page = f.read()
    assert REMOTE.search(page), "asv's page loads nothing remote any more: drop this step"
    offline = publish_offline.rewrite(page)
    assert not REMOTE.search(offline)
    for _, _, target in publish_offline.VENDORED.values():
        assert f'"vendor/{target}"' in offline
    assert "integrity=" not in offline  # the CDN builds' hashes would block the copies
    assert "onerror=\"js_load_failure()\"" in offline  # a missing copy still shows asv's error


def test_rewrite_refuses_a_remote_script_it_does_not_vendor(publish_offline):
    page = '<script src="https://cdn.example.org/new-plugin.js"></script>'
    with pytest.raises(ValueError, match="new-plugin.js.*not vendored"):
        publish_offline.rewrite(page)


def test_rewrite_leaves_links_and_local_scripts_alone(publish_offline):
    page = ('<a href="https://github.com/airspeed-velocity/asv/">asv</a>'
            '<script src="asv.js"></script>')
    assert publish_offline.rewrite(page) == page


@pytest.mark.parametrize("text, expected", [("1", [1]), ("2,1", [1, 2]), (" 1, 2 ,", [1, 2])])
def test_thread_counts_from_the_environment(threads, monkeypatch, text, expected):
    monkeypatch.setenv(threads.ENV_VAR, text)
    assert threads.thread_counts() == expected


@pytest.mark.parametrize("text", ["", "0", "two", "1,-1"])
def test_thread_counts_reject_bad_values_naming_the_variable(threads, monkeypatch, text):
    monkeypatch.setenv(threads.ENV_VAR, text)
    with pytest.raises(ValueError, match=threads.ENV_VAR):
        threads.thread_counts()

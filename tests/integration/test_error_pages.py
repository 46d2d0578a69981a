"""The error pages say what happened and what the reader can do (issue 19): a 403 names who
is signed in and whom the page is for, and offers a way out; none says "please try again"
where trying again cannot help."""

import pytest
from flask import render_template

from tests.helpers import csrf_token, login, make_user


@pytest.fixture
def vendor(client):
    user = make_user("seller@example.test", "vendor")
    login(client, user.email)
    return user


def test_403_names_the_account_and_whom_the_page_is_for(client, vendor):
    r = client.get("/orders")
    assert r.status_code == 403
    assert "You cannot open this page" in r.text
    assert "signed in as <strong>seller@example.test</strong> (vendor)" in r.text
    assert "This page is for customers." in r.text
    assert "try again" not in r.text.lower()
    assert '<a href="/">Go to your home page</a>' in r.text
    assert 'action="/logout"' in r.text and "Sign out and sign in as someone else" in r.text


def test_403_way_out_signs_out_to_the_login_page(client, vendor):
    page = client.get("/cards")
    assert page.status_code == 403
    out = client.post("/logout", data={"csrf_token": csrf_token(page.text)})
    assert out.status_code == 302 and out.location.endswith("/login")
    assert client.get("/vendor").status_code == 302  # signed out: back to the login page


def test_403_for_htmx_says_whom_the_page_is_for(client, vendor):
    r = client.get("/cards", headers={"HX-Request": "true"})
    assert r.status_code == 403
    assert r.headers["X-Error-Message"] == "This page is for customers."


def test_a_page_for_two_roles_names_both(client):
    admin = make_user("boss@example.test", "admin")
    login(client, admin.email)
    r = client.get("/vendor/sales")
    assert r.status_code == 403 and "This page is for vendors." in r.text


def test_404_says_what_may_be_wrong_and_links_home(client, vendor):
    r = client.get("/no/such/page")
    assert r.status_code == 404
    assert "Page not found" in r.text and "belongs to someone else" in r.text
    assert "try again" not in r.text.lower()
    assert '<a href="/">Back to your home page</a>' in r.text


def test_404_signed_out_links_to_sign_in(client):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and '<a href="/login">Sign in</a>' in r.text


@pytest.mark.parametrize("status, message, says", [
    (429, "Too many requests", "the limits reset within the hour"),
    (429, "Too many declines: try again in 12 minutes.", "Too many declines: try again in 12"),
    (500, "Something went wrong", "an error of ours, which we have logged"),
    (503, "Service unavailable", "not answering right now"),
    (503, "We could not reach the payment processor. Nothing was charged; please try again "
          "in a moment.", "Nothing was charged"),
    (409, "Error", "Reload the page to see where things stand"),
    (400, "Bad request", "check what you entered"),
])
def test_other_error_pages_read_sensibly(test_app, status, message, says):
    with test_app.test_request_context("/somewhere"):
        html = render_template("error.html", status=status, message=message)
    assert says in html
    assert "<h1>Error</h1>" not in html and "<h1>Bad request</h1>" not in html

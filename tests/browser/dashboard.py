"""Drives Tributary's dashboard page in headless Chromium (Debian's chromium
and chromedriver) with selenium.

Reads JSON on stdin: {"base": "http://127.0.0.1:PORT", "key": "...",
"dashboard": ID, "trend": {"tile": i, "totals": {label: total}, "points": n},
"funnel": {"tile": i, "counts": [...]}, "retention": {"tile": i, "cohorts":
[{"size": n, "values": [...]}]}, "screenshots": "DIR"}. Enters the key
in the page's form, opens the dashboard, checks that the trend's legend and
points, the funnel's bars and the retention grid show the numbers given
(the API's), saves a new
insight through the form and sees it drawn, checks the page at phone width,
and writes desktop.png and phone.png to DIR. Prints one line per check;
exits 1 naming the first that failed. Used by
workloads/cli/tests/dashboard_page.rs.
"""
import json
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECS = 30


def fail(message: str) -> None:
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(ok: bool, message: str) -> None:
    if not ok:
        fail(message)
    print(f"ok: {message}", flush=True)


def main() -> None:
    spec = json.load(sys.stdin)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1280,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(driver, WAIT_SECS)
    try:
        run(driver, wait, spec)
    finally:
        driver.quit()


def tiles(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#tiles article.tile")


def run(driver, wait, spec) -> None:
    base = spec["base"]
    driver.get(f"{base}/#dashboard={spec['dashboard']}")
    wait.until(ec.visibility_of_element_located((By.ID, "key")))
    driver.find_element(By.ID, "key").send_keys(spec["key"])
    driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(lambda d: len(tiles(d)) == spec["tiles"])
    check(spec["key"] not in driver.current_url, "the key is not in the URL")
    check(driver.find_element(By.ID, "title").text == spec["name"], f"dashboard {spec['name']!r} is open")

    trend = tiles(driver)[spec["trend"]["tile"]]
    legend = {li.get_attribute("data-series"): float(li.get_attribute("data-total"))
              for li in trend.find_elements(By.CSS_SELECTOR, "ul.legend li")}
    want = {k: float(v) for k, v in spec["trend"]["totals"].items()}
    check(legend == want, f"trend legend totals {legend} == {want}")
    points = trend.find_elements(By.CSS_SELECTOR, "svg circle[data-value]")
    check(len(points) == spec["trend"]["points"], f"{len(points)} trend points drawn")
    drawn = sum(float(p.get_attribute("data-value")) for p in points)
    check(drawn == sum(want.values()), f"trend points add up to {drawn}")

    funnel = tiles(driver)[spec["funnel"]["tile"]]
    counts = [int(s.get_attribute("data-count")) for s in funnel.find_elements(By.CSS_SELECTOR, ".step")]
    check(counts == spec["funnel"]["counts"], f"funnel counts {counts} == {spec['funnel']['counts']}")
    widths = [b.size["width"] for b in funnel.find_elements(By.CSS_SELECTOR, ".bar")]
    check(all(a >= b for a, b in zip(widths, widths[1:])) and widths[0] > 0, f"funnel bars narrow step by step: {widths}")
    retention = tiles(driver)[spec["retention"]["tile"]]
    rows = retention.find_elements(By.CSS_SELECTOR, "table.retention tr")[1:]
    grid = [{"size": int(r.find_elements(By.TAG_NAME, "td")[0].text),
             "values": [int(td.get_attribute("data-value")) for td in r.find_elements(By.CSS_SELECTOR, "td[data-value]")
                        if td.get_attribute("data-value") != ""]}
            for r in rows]
    check(grid == spec["retention"]["cohorts"], f"retention grid {grid} == {spec['retention']['cohorts']}")
    shades = {td.value_of_css_property("background-color") for r in rows for td in r.find_elements(By.CSS_SELECTOR, "td[data-value]")}
    check(len(shades) > 1, f"retention cells shaded by percentage ({len(shades)} shades)")
    driver.save_screenshot(f"{spec['screenshots']}/desktop.png")

    # The interval picker: weekly buckets, the same totals.
    Select(driver.find_element(By.ID, "interval")).select_by_value("week")
    def points_of(d):
        shown = tiles(d)  # empty while the dashboard is drawn again
        if len(shown) <= spec["trend"]["tile"]:
            return -1
        return len(shown[spec["trend"]["tile"]].find_elements(By.CSS_SELECTOR, "svg circle[data-value]"))
    wait.until(lambda d: 0 < points_of(d) < spec["trend"]["points"])
    weekly = {li.get_attribute("data-series"): float(li.get_attribute("data-total"))
              for li in tiles(driver)[spec["trend"]["tile"]].find_elements(By.CSS_SELECTOR, "ul.legend li")}
    # Event counts add up the same by week; unique users per week do not.
    counts = lambda totals: {k: v for k, v in totals.items() if k.endswith("(total)")}
    check(counts(weekly) == counts(want) and counts(want),
          f"weekly buckets ({points_of(driver)} points) keep the event counts {counts(weekly)}")
    Select(driver.find_element(By.ID, "interval")).select_by_value("")
    wait.until(lambda d: points_of(d) == spec["trend"]["points"])

    # A new insight through the form lands on the dashboard.
    before = len(tiles(driver))
    driver.find_element(By.CSS_SELECTOR, "#new-insight summary").click()
    form = driver.find_element(By.ID, "insight-form")
    form.find_element(By.NAME, "name").send_keys("Page views per day")
    form.find_element(By.NAME, "events").send_keys(spec["new_event"])
    form.find_element(By.NAME, "date_from").clear()
    form.find_element(By.NAME, "date_from").send_keys(spec["new_from"])
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: len(tiles(d)) == before + 1)
    new = tiles(driver)[-1]
    check(new.find_element(By.TAG_NAME, "h3").text == "Page views per day", "the saved insight is drawn")
    check(float(new.find_element(By.CSS_SELECTOR, "ul.legend li").get_attribute("data-total")) == spec["new_total"],
          f"the new trend shows {spec['new_total']}")

    # Phone width: one column, nothing wider than the screen.
    driver.set_window_size(390, 844)
    wait.until(lambda d: d.execute_script("return window.innerWidth") <= 400)
    overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"no horizontal scrolling at phone width ({overflow} px)")
    # Charts are drawn again for the narrow screen, not squeezed.
    def drawn_width(d):
        box = d.find_element(By.CSS_SELECTOR, "#tiles article.tile svg").get_dom_attribute("viewBox")
        return float(box.split()[2]) if box else None
    try:
        wait.until(lambda d: (drawn_width(d) or 10_000) <= 400)
    except TimeoutException:
        fail(f"the trend is not drawn again for the phone's width (drawn {drawn_width(driver)} wide)")
    print("ok: the trend is drawn again for the phone's width", flush=True)
    lefts = {t.location["x"] for t in tiles(driver)}
    check(len(lefts) == 1, f"tiles in one column at phone width ({lefts})")
    driver.save_screenshot(f"{spec['screenshots']}/phone.png")

    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    check(not errors, f"no errors in the console {errors}")


if __name__ == "__main__":
    main()

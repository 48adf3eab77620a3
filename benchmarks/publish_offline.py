"""Publish the asv dashboard so that it renders with no network: ``python benchmarks/publish_offline.py``.

asv's ``index.html`` loads jQuery, flot, bootstrap and a few plugins from CDNs; with no
network a browser shows only asv's "Can not determine continental origin of swallow" error.
This script runs ``asv publish`` (skip with ``--no-publish``), then copies those files into
the published site under ``vendor/`` and points the page's ``<script>`` and ``<link>`` tags
at the copies. The files come from the npm registry through ``npm pack`` (the registry's
tarballs of the same releases), fetched once into a cache folder, never from a CDN at view
time. asv's result files are not touched.

stupidtable 1.0.1, which asv loads from a CDN, is not on npm; the npm package
stupid-table-plugin 1.1.3 is the same plugin's later release with the same ``$.stupidtable``
call. The CDN tags' ``integrity`` hashes are dropped with the URLs: they pin the CDN's
minified builds, and the copies here come from another build of the same versions.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile

CDNJS = "https://cdnjs.cloudflare.com/ajax/libs/"
JSDELIVR = "https://cdn.jsdelivr.net/npm/"
FLOT = ("", ".time", ".selection", ".categories")  # flot and the plugins asv loads
# (CDN address as in asv's index.html, npm package@version, file in its tarball)
SOURCES = [
    ("https://code.jquery.com/jquery-3.3.1.min.js", "jquery@3.3.1", "package/dist/jquery.min.js"),
    *((f"{CDNJS}flot/0.8.3/jquery.flot{part}.min.js", "flot@0.8.3", f"package/jquery.flot{part}.js")
      for part in FLOT),
    (f"{JSDELIVR}flot-orderbars@1.0.0/js/jquery.flot.orderBars.js", "flot-orderbars@1.0.0",
     "package/js/jquery.flot.orderBars.js"),
    (f"{CDNJS}stupidtable/1.0.1/stupidtable.min.js", "stupid-table-plugin@1.1.3",
     "package/stupidtable.min.js"),
    (f"{CDNJS}blueimp-md5/2.19.0/js/md5.min.js", "blueimp-md5@2.19.0", "package/js/md5.min.js"),
    (f"{JSDELIVR}bootstrap@3.1.1/dist/js/bootstrap.min.js", "bootstrap@3.1.1",
     "package/dist/js/bootstrap.min.js"),
    (f"{JSDELIVR}bootstrap@3.1.1/dist/css/bootstrap.min.css", "bootstrap@3.1.1",
     "package/dist/css/bootstrap.min.css"),
]
# CDN address -> (package, file in its tarball, name under vendor/). The stylesheet sits in
# vendor/css/ because it loads its icon font from ../fonts/.
VENDORED = {url: (spec, member, ("css/" if member.endswith(".css") else "")
                  + member.rsplit("/", 1)[1]) for url, spec, member in SOURCES}
# files the stylesheet refers to: (package, tarball folder, vendor/ folder)
EXTRA_TREES = [("bootstrap@3.1.1", "package/dist/fonts/", "fonts/")]

# a <script src=...> or <link href=...> tag that loads something from another host
REMOTE_TAG = re.compile(r"<(script|link)\b[^>]*?\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>")
DROPPED_ATTRS = re.compile(r"\s+(?:integrity|crossorigin|referrerpolicy)=\"[^\"]*\"")


def tarball(spec, cache):
    """Path of the npm tarball of ``spec`` (package@version) in ``cache``, packed if absent."""
    name, version = spec.rsplit("@", 1)
    path = os.path.join(cache, f"{name}-{version}.tgz")
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            sys.exit("publish_offline: npm is needed to fetch the dashboard's scripts "
                     "(Debian: apt-get install -y npm)")
        subprocess.run([npm, "pack", "--silent", spec, "--pack-destination", cache],
                       check=True, stdout=subprocess.DEVNULL, timeout=300)
    return path


def fetch(vendor, cache):
    """Write every vendored file into ``vendor``."""
    for spec, member, target in VENDORED.values():
        with tarfile.open(tarball(spec, cache)) as tar:
            data = tar.extractfile(member).read()
        _write(os.path.join(vendor, target), data)
    for spec, folder, target in EXTRA_TREES:
        with tarfile.open(tarball(spec, cache)) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.startswith(folder):
                    rel = member.name[len(folder):]
                    _write(os.path.join(vendor, target, rel), tar.extractfile(member).read())


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def rewrite(html):
    """``html`` with every vendored CDN tag pointing at vendor/; raises on any other remote
    script or stylesheet, so a new asv release that loads one more file fails loudly."""
    def local(match):
        tag, url = match.group(0), match.group(2)
        if url not in VENDORED:
            raise ValueError(f"{match.group(1)} tag loads {url}, which is not vendored; "
                             "add it to SOURCES in benchmarks/publish_offline.py")
        return DROPPED_ATTRS.sub("", tag.replace(url, "vendor/" + VENDORED[url][2]))
    return REMOTE_TAG.sub(local, html)


def make_offline(html_dir, cache):
    """Vendor the scripts into ``html_dir`` and rewrite its pages; returns the pages changed."""
    fetch(os.path.join(html_dir, "vendor"), cache)
    changed = []
    for name in sorted(os.listdir(html_dir)):
        if not name.endswith(".html"):
            continue
        path = os.path.join(html_dir, name)
        with open(path, encoding="utf-8") as f:
            html = f.read()
        new = rewrite(html)
        if new != html:
            with open(path, "w", encoding="utf-8") as f:
                f.write(new)
            changed.append(name)
    return changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html-dir", default=".asv/html",
                        help="the published site (asv.conf.json's html_dir)")
    parser.add_argument("--cache", default=".asv/vendor-cache",
                        help="where the npm tarballs are kept between runs")
    parser.add_argument("--config", default="asv.conf.json", help="asv's configuration file")
    parser.add_argument("--no-publish", action="store_true",
                        help="only vendor an already published site")
    args = parser.parse_args(argv)
    if not args.no_publish:
        subprocess.run([sys.executable, "-m", "asv", "--config", args.config, "publish"],
                       check=True)
    if not os.path.isfile(os.path.join(args.html_dir, "index.html")):
        sys.exit(f"publish_offline: no index.html in {args.html_dir}: run asv publish first")
    changed = make_offline(args.html_dir, args.cache)
    print(f"publish_offline: {len(VENDORED)} files vendored into "
          f"{os.path.join(args.html_dir, 'vendor')}; rewrote {', '.join(changed) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

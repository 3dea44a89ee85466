#!/usr/bin/env python3
"""A small GitLab stand-in for the vcs-agent demo and tests (Python 3 stdlib only).

It serves a directory of bare repositories (``ROOT/group/repo.git``):

* git smart HTTP (and the dumb paths ``git http-backend`` knows) by running
  ``git http-backend`` as a CGI program. Request bodies are streamed to the program,
  whether framed by ``Content-Length`` or ``Transfer-Encoding: chunked``; a gzip request
  body is passed through untouched with ``HTTP_CONTENT_ENCODING`` set, so http-backend
  inflates it itself. The program's output is streamed back (its own ``Content-Length`` if
  it sets one, chunked otherwise). ``git-receive-pack`` is enabled on purpose: when a push
  is refused through the tunnel, it is the agent's allowlist that refused it.
* two GitLab-API-like JSON endpoints:
    GET /api/v4/projects/<id | url-encoded group%2Frepo>
    GET /api/v4/projects/<id | url-encoded group%2Frepo>/repository/branches
  Anything else answers 404 with a JSON body.

Usage:
    git-http-server.py --root DIR [--listen 127.0.0.1:0] [--port-file FILE] [--log FILE]
                       [--verbose]

``--port-file`` receives the bound port (written atomically once listening). ``--log``
receives one line per request, ``METHOD TARGET STATUS`` (target with its query), flushed
at once and written before the response body, so a client that has its answer can rely on
the line being there. SIGTERM/SIGINT stop the server and exit 0.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COPY_CHUNK = 64 * 1024

# The paths git http-backend serves (its service table), relative to a repository.
GIT_PATH = re.compile(
    r"^/.+?/(?:HEAD"
    r"|info/refs"
    r"|objects/info/(?:alternates|http-alternates|packs|[^/]+)"
    r"|objects/[0-9a-f]{2}/[0-9a-f]{38,62}"
    r"|objects/pack/pack-[0-9a-f]{40,64}\.(?:pack|idx)"
    r"|git-upload-pack|git-receive-pack)$"
)

# Inherited variables that would change what git does; the CGI gets its own.
GIT_ENV_KEEP = ("GIT_EXEC_PATH", "GIT_TRACE", "GIT_TRACE_PACKET", "GIT_TRACE_CURL")


class ClientGone(Exception):
    """The client closed the connection or sent a malformed body."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address, root, log_file, verbose):
        host = address[0]
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.root = os.path.realpath(root)
        self.log_file = log_file
        self.log_lock = threading.Lock()
        self.verbose = verbose
        self.children = set()
        self.children_lock = threading.Lock()

    def log_line(self, line):
        if self.log_file is None:
            return
        with self.log_lock:
            self.log_file.write(line + "\n")
            self.log_file.flush()

    def kill_children(self):
        with self.children_lock:
            children = list(self.children)
        for child in children:
            try:
                child.kill()
            except OSError:
                pass


def git(repo, *args):
    """Runs git in a bare repository; returns stdout text or None on failure."""
    try:
        result = subprocess.run(
            ["git", "--git-dir", repo, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=git_env(),
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.decode("utf-8", "replace")


def git_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in GIT_ENV_KEEP}
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    env["GIT_CONFIG_COUNT"] = "2"
    env["GIT_CONFIG_KEY_0"] = "http.receivepack"
    env["GIT_CONFIG_VALUE_0"] = "true"
    env["GIT_CONFIG_KEY_1"] = "safe.directory"
    env["GIT_CONFIG_VALUE_1"] = "*"
    return env


def project_id(path_with_namespace):
    """A stable numeric id derived from the project path."""
    return 1 + zlib.crc32(path_with_namespace.encode()) % 999_983


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "git-http-server/1"

    def version_string(self):
        return self.server_version

    # -- logging -------------------------------------------------------------------------

    def log_request(self, code="-", size="-"):
        # Called by send_response, i.e. before any body byte is written.
        status = code.value if hasattr(code, "value") else code
        method = getattr(self, "command", None) or "-"
        target = getattr(self, "path", None) or "-"
        self.server.log_line(f"{method} {target} {status}")
        if self.server.verbose:
            super().log_request(code, size)

    def log_message(self, format, *args):
        if self.server.verbose:
            super().log_message(format, *args)

    # -- dispatch ------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def do_OPTIONS(self):
        self.dispatch()

    def dispatch(self):
        path = self.path.split("?", 1)[0]
        try:
            if path.startswith("/api/v4/"):
                self.api(path)
            elif GIT_PATH.match(path):
                self.cgi(path)
            else:
                self.discard_body()
                self.send_json(404, {"error": "404 Not Found"})
        except (ClientGone, BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    # -- request bodies ------------------------------------------------------------------

    def body_framing(self):
        """('length', n) | ('chunked', None) | ('none', None); raises ValueError if bad."""
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if encodings:
            if lengths:
                raise ValueError("both Content-Length and Transfer-Encoding")
            if ",".join(encodings).strip().lower() != "chunked":
                raise ValueError("unsupported Transfer-Encoding")
            return ("chunked", None)
        if lengths:
            values = {v.strip() for l in lengths for v in l.split(",")}
            if len(values) != 1:
                raise ValueError("conflicting Content-Length")
            value = values.pop()
            if not value.isdigit():
                raise ValueError("invalid Content-Length")
            return ("length", int(value))
        return ("none", None)

    def body_pieces(self, framing):
        """Yields the request body in pieces, consuming exactly its bytes."""
        kind, length = framing
        if kind == "length":
            remaining = length
            while remaining > 0:
                data = self.rfile.read(min(COPY_CHUNK, remaining))
                if not data:
                    raise ClientGone("request body cut short")
                remaining -= len(data)
                yield data
        elif kind == "chunked":
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise ClientGone("bad chunk size line")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ClientGone("bad chunk size")
                if size == 0:
                    while True:  # trailers, up to the empty line
                        trailer = self.rfile.readline(8192)
                        if not trailer:
                            raise ClientGone("chunked body cut short")
                        if trailer in (b"\r\n", b"\n"):
                            return
                remaining = size
                while remaining > 0:
                    data = self.rfile.read(min(COPY_CHUNK, remaining))
                    if not data:
                        raise ClientGone("chunk cut short")
                    remaining -= len(data)
                    yield data
                if self.rfile.readline(16) not in (b"\r\n", b"\n"):
                    raise ClientGone("chunk not followed by CRLF")

    def discard_body(self):
        try:
            framing = self.body_framing()
        except ValueError:
            self.close_connection = True
            return
        for _ in self.body_pieces(framing):
            pass

    # -- responses -----------------------------------------------------------------------

    def send_json(self, status, value):
        body = (json.dumps(value, indent=None) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    # -- GitLab-like API -----------------------------------------------------------------

    def repositories(self):
        """Every bare repository under the root: {path_with_namespace: git_dir}."""
        found = {}
        for directory, subdirs, _files in os.walk(self.server.root):
            if os.path.isfile(os.path.join(directory, "HEAD")) and os.path.isdir(
                os.path.join(directory, "objects")
            ):
                relative = os.path.relpath(directory, self.server.root).replace(os.sep, "/")
                name = relative[:-4] if relative.endswith(".git") else relative
                found[name] = directory
                subdirs[:] = []
        return found

    def find_project(self, ident):
        """(path_with_namespace, git_dir) for an id or an url-encoded path, or None."""
        ident = urllib.parse.unquote(ident)
        repos = self.repositories()
        if ident.isdigit():
            for name, git_dir in repos.items():
                if project_id(name) == int(ident):
                    return name, git_dir
            return None
        if ident.endswith(".git"):
            ident = ident[:-4]
        if ident in repos:
            return ident, repos[ident]
        return None

    def api(self, path):
        self.discard_body()
        if self.command not in ("GET", "HEAD"):
            self.send_json(405, {"error": "405 Method Not Allowed"})
            return
        # Split the raw path: the project part is one segment (group%2Frepo or an id).
        match = re.match(r"^/api/v4/projects/([^/]+)(/repository/branches)?/?$", path)
        if not match:
            self.send_json(404, {"error": "404 Not Found"})
            return
        project = self.find_project(match.group(1))
        if project is None:
            self.send_json(404, {"message": "404 Project Not Found"})
            return
        name, git_dir = project
        head = git(git_dir, "symbolic-ref", "--short", "-q", "HEAD")
        default_branch = head.strip() if head else None
        if match.group(2):
            self.send_json(200, self.branches(git_dir, default_branch))
            return
        self.send_json(
            200,
            {
                "id": project_id(name),
                "name": name.rsplit("/", 1)[-1],
                "path": name.rsplit("/", 1)[-1],
                "path_with_namespace": name,
                "default_branch": default_branch,
                "http_url_to_repo": f"http://{self.headers.get('Host', 'localhost')}/{name}.git",
                "visibility": "private",
            },
        )

    @staticmethod
    def branches(git_dir, default_branch):
        separator = "%00"
        fields = [
            "%(refname:short)",
            "%(objectname)",
            "%(objectname:short)",
            "%(contents:subject)",
            "%(authorname)",
            "%(authoremail:trim)",
            "%(authordate:iso-strict)",
            "%(committerdate:iso-strict)",
        ]
        out = git(git_dir, "for-each-ref", "--format=" + separator.join(fields), "refs/heads")
        result = []
        for line in (out or "").splitlines():
            parts = line.split("\0")
            if len(parts) != len(fields):
                continue
            name, sha, short, title, author, email, authored, committed = parts
            result.append(
                {
                    "name": name,
                    "commit": {
                        "id": sha,
                        "short_id": short,
                        "title": title,
                        "author_name": author,
                        "author_email": email,
                        "authored_date": authored,
                        "committed_date": committed,
                    },
                    "merged": False,
                    "protected": False,
                    "default": name == default_branch,
                }
            )
        return result

    # -- git http-backend ----------------------------------------------------------------

    def cgi(self, path):
        try:
            framing = self.body_framing()
        except ValueError as e:
            self.close_connection = True
            self.send_json(400, {"error": f"400 Bad Request: {e}"})
            return

        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        env = git_env()
        host, port = self.server.server_address[:2]
        env.update(
            {
                "GIT_PROJECT_ROOT": self.server.root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": self.request_version,
                "SERVER_SOFTWARE": self.server_version,
                "SERVER_NAME": str(host),
                "SERVER_PORT": str(port),
                "REQUEST_METHOD": self.command,
                "PATH_INFO": urllib.parse.unquote(path),
                "QUERY_STRING": query,
                "REQUEST_URI": self.path,
                "SCRIPT_NAME": "",
                "REMOTE_ADDR": self.client_address[0],
            }
        )
        content_type = self.headers.get("Content-Type")
        if content_type:
            env["CONTENT_TYPE"] = content_type
        if framing[0] == "length":
            env["CONTENT_LENGTH"] = str(framing[1])
        # Request headers as HTTP_*: Git-Protocol, Content-Encoding (gzip bodies), ...
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_PROXY"):
                continue
            env[key] = f"{env[key]}, {value}" if key in env else value

        try:
            child = subprocess.Popen(
                ["git", "http-backend"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None if self.server.verbose else subprocess.DEVNULL,
                env=env,
                cwd=self.server.root,
            )
        except OSError as e:
            self.discard_body()
            self.send_json(500, {"error": f"cannot run git http-backend: {e}"})
            return
        with self.server.children_lock:
            self.server.children.add(child)
        try:
            self.run_cgi(child, framing)
        finally:
            for stream in (child.stdin, child.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            with self.server.children_lock:
                self.server.children.discard(child)

    def run_cgi(self, child, framing):
        # Feed the body from a thread so a program that answers before reading everything
        # (or writes a lot while reading) cannot deadlock against us.
        feed_error = []

        def feed():
            stdin_open = True
            try:
                for piece in self.body_pieces(framing):
                    if stdin_open:
                        try:
                            child.stdin.write(piece)
                        except (BrokenPipeError, OSError):
                            stdin_open = False  # keep reading: the body must be consumed
            except Exception as e:  # noqa: BLE001 - any failure ends the connection
                feed_error.append(e)
            finally:
                try:
                    child.stdin.close()
                except OSError:
                    pass

        feeder = threading.Thread(target=feed, name="cgi-feed", daemon=True)
        feeder.start()

        # CGI headers, up to the empty line.
        status, reason, headers = 200, None, []
        out = child.stdout
        while True:
            line = out.readline(65536)
            if not line:
                break  # no body at all; headers (if any) end at EOF
            line = line.rstrip(b"\r\n")
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip(), value.strip()
            if name.lower() == "status":
                code, _, text = value.partition(" ")
                status, reason = int(code), (text or None)
            else:
                headers.append((name, value))

        length = next((v for n, v in headers if n.lower() == "content-length"), None)
        chunked = length is None and self.request_version == "HTTP/1.1"
        body_allowed = self.command != "HEAD" and status not in (204, 304)

        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() in ("transfer-encoding", "connection"):
                continue
            self.send_header(name, value)
        if body_allowed and length is None:
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
                self.close_connection = True
        self.end_headers()

        while True:
            data = out.read1(COPY_CHUNK)
            if not data:
                break
            if not body_allowed:
                continue
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            else:
                self.wfile.write(data)
        if body_allowed and chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

        feeder.join()
        if feed_error:
            self.close_connection = True


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    with open(temporary, "w") as f:
        f.write(f"{port}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def main():
    parser = argparse.ArgumentParser(
        description="Serve bare git repositories over smart HTTP, plus a few GitLab-like "
        "API endpoints, for the vcs-agent demo and tests."
    )
    parser.add_argument("--root", required=True, help="directory of bare repositories")
    parser.add_argument(
        "--listen", type=parse_listen, default=("127.0.0.1", 0),
        help="HOST:PORT to listen on; port 0 picks a free one [127.0.0.1:0]",
    )
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--log", help="append one line per request: METHOD TARGET STATUS")
    parser.add_argument("--verbose", action="store_true", help="log to stderr too")
    args = parser.parse_args()

    if not os.path.isdir(args.root):
        parser.error(f"--root {args.root!r} is not a directory")
    log_file = open(args.log, "a", buffering=1) if args.log else None

    server = Server(args.listen, args.root, log_file, args.verbose)
    port = server.server_address[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    if args.verbose:
        print(f"git-http-server: listening on {args.listen[0]}:{port}", file=sys.stderr)

    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    serving.daemon = True
    serving.start()
    while not stop.wait(0.5):
        if not serving.is_alive():
            break
    server.shutdown()
    server.server_close()
    server.kill_children()
    if log_file is not None:
        log_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

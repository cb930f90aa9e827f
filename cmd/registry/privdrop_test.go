//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestWritableDirs(t *testing.T) {
	spoolOutside := writeFile(t, "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/cache\nproxy:\n  remoteurl: "+seedECR+
		"\necr:\n  push: anonymous\n  spooldir: /var/spool/ecr\n")
	spoolInside := writeFile(t, "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/cache/\nproxy:\n  remoteurl: "+seedECR+
		"\necr:\n  push: anonymous\n  spooldir: /srv/cache/spool\n")
	inmemory := writeFile(t, "version: 0.1\nstorage:\n  inmemory: {}\nproxy:\n  remoteurl: "+seedECR+"\necr:\n  push: anonymous\n")
	for _, c := range []struct {
		name, path string
		lookup     lookupFunc
		want       []string
	}{
		{"the seed's variables", "", envMap("ECR", seedECR, "PORT", "5000"), []string{"/cache"}},
		{"CACHE_DIR", "", envMap("ECR", seedECR, "PORT", "5000", "CACHE_DIR", "/data/ecr/"), []string{"/data/ecr"}},
		{"a spool directory elsewhere", spoolOutside, envMap(), []string{"/srv/cache", "/var/spool/ecr"}},
		{"a spool directory in the cache", spoolInside, envMap(), []string{"/srv/cache"}},
		{"no local storage", inmemory, envMap(), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := loadSettings(c.path, c.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if got := writableDirs(s); !reflect.DeepEqual(got, c.want) {
				t.Errorf("writableDirs = %q, want %q", got, c.want)
			}
		})
	}
}

func TestCacheDirErrorSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		err  error
		uid  int
		want []string
	}{
		{"read-only mount", &fs.PathError{Op: "open", Path: dir, Err: syscall.EROFS}, 0, []string{"read-only", "no :ro", "CACHE_DIR"}},
		{"read-only mount, after the drop", &fs.PathError{Op: "open", Path: dir, Err: syscall.EROFS}, unprivilegedUID, []string{"read-only"}},
		{"unmapped UID (rootless engine)", &fs.PathError{Op: "lchown", Path: dir, Err: syscall.EINVAL}, 0, []string{"no mapping", "/etc/subuid", "--user"}},
		{"chown refused", &fs.PathError{Op: "lchown", Path: dir, Err: syscall.EPERM}, 0, []string{"CAP_CHOWN", "root_squash", "chown -R 65532:65532", "--user"}},
		{"not root, not writable", &fs.PathError{Op: "open", Path: dir, Err: syscall.EACCES}, 1000, []string{"runs as UID 1000", "start the container as root", "chown -R 65532:65532"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := cacheDirError(dir, c.err, c.uid)
			if !errors.Is(err, c.err) {
				t.Errorf("error %v does not wrap %v", err, c.err)
			}
			msg := err.Error()
			for _, w := range append(c.want, dir, "owner ") {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not say %q", msg, w)
				}
			}
		})
	}
}

func TestMemCopyIsPrivateAndSealed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.pem")
	content := []byte("-----BEGIN EC PRIVATE KEY-----\nnot really\n-----END EC PRIVATE KEY-----\n")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	fd, err := memCopy(path, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	c := tlsCopy{key: true, original: path, fd: fd}
	defer closeCopies([]tlsCopy{c})

	// Opened by path as many times as a reloading TLS loader likes.
	for range 2 {
		got, err := os.ReadFile(c.path())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("copy holds %q, want %q", got, content)
		}
	}
	fi, err := os.Stat(c.path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("copy mode %v, want 0400", fi.Mode().Perm())
	}
	if f, err := os.OpenFile(c.path(), os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte("x"))
		_ = f.Close()
		if werr == nil {
			t.Error("the copy can be written to")
		}
	}
	if _, err := memCopy(filepath.Join(t.TempDir(), "missing.pem"), os.Getuid(), os.Getgid()); err == nil {
		t.Error("memCopy of a missing file succeeded")
	}
}

func TestUseTLSCopies(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(readable, []byte("cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := filepath.Join(dir, "gone", "key.pem") // opening it fails, as a root key does after the drop
	copyOf := func(key bool, original string) tlsCopy {
		fd, err := memCopy(readable, os.Getuid(), os.Getgid())
		if err != nil {
			t.Fatal(err)
		}
		return tlsCopy{key: key, original: original, fd: fd}
	}
	log := logrus.New()
	log.SetOutput(io.Discard)

	for _, c := range []struct {
		name   string
		copies []tlsCopy
		lookup lookupFunc
		want   map[string]int // variable set -> index of the copy it names
	}{
		{"readable files are used as configured", []tlsCopy{copyOf(true, readable)}, envMap(), map[string]int{}},
		{"the seed's SSL_KEY", []tlsCopy{copyOf(true, unreadable)}, envMap("SSL_KEY", " "+unreadable+" "), map[string]int{"SSL_KEY": 0}},
		{"the seed's SSL_CERTIFICATE", []tlsCopy{copyOf(false, unreadable)}, envMap("SSL_CERTIFICATE", unreadable), map[string]int{"SSL_CERTIFICATE": 0}},
		{"a configuration file's http.tls", []tlsCopy{copyOf(true, unreadable), copyOf(false, unreadable)}, envMap(),
			map[string]int{"REGISTRY_HTTP_TLS_KEY": 0, "REGISTRY_HTTP_TLS_CERTIFICATE": 1}},
		{"SSL_KEY names another file", []tlsCopy{copyOf(true, unreadable)}, envMap("SSL_KEY", "/elsewhere.pem"), map[string]int{"REGISTRY_HTTP_TLS_KEY": 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			set := map[string]string{}
			setenv := func(k, v string) error { set[k] = v; return nil }
			if err := useTLSCopies(c.copies, c.lookup, setenv, log); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for k, i := range c.want {
				want[k] = c.copies[i].path()
			}
			if !reflect.DeepEqual(set, want) {
				t.Errorf("set %v, want %v", set, want)
			}
			for k, p := range set {
				if _, err := os.ReadFile(p); err != nil {
					t.Errorf("%s=%s: %v", k, p, err)
				}
			}
			// Copies not used are closed; used ones stay open.
			for _, cp := range c.copies {
				used := false
				for _, p := range set {
					used = used || p == cp.path()
				}
				if _, err := os.Stat(cp.path()); (err == nil) != used {
					t.Errorf("copy of %s: open %v, used %v", cp.original, err == nil, used)
				}
			}
			closeCopies(c.copies)
		})
	}
}

func TestTakeOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: it gives files to another user")
	}
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.WriteFile(outside, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "cache", "docker")
	if err := os.MkdirAll(filepath.Join(dir, "registry", "v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "registry", "v2", "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(base, "cache")
	n, err := takeOwnership(root, unprivilegedUID, unprivilegedGID)
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("changed %d entries, want 6 (cache, docker, registry, v2, data, link)", n)
	}
	owner := func(p string) string {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	err = filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err == nil && owner(p) != "65532:65532" {
			t.Errorf("%s owned by %s", p, owner(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := owner(outside); got != "0:0" {
		t.Errorf("the symbolic link was followed: its target is owned by %s", got)
	}
	if n, err := takeOwnership(root, unprivilegedUID, unprivilegedGID); err != nil || n != 0 {
		t.Errorf("second run: %d changes, %v; want none", n, err)
	}
	if n, err := takeOwnership(filepath.Join(base, "new", "cache"), unprivilegedUID, unprivilegedGID); err != nil || n != 1 {
		t.Errorf("missing directory: %d changes, %v; want it created and given", n, err)
	}
}

func TestCheckPortsRefusesPrivilegedPorts(t *testing.T) {
	for _, c := range []struct {
		name   string
		lookup lookupFunc
		env    string // one distribution override, KEY=value, in the process environment
		start  int
		want   string // "" for no error
	}{
		{"the seed's port 5000", envMap("ECR", seedECR, "PORT", "5000"), "", 1024, ""},
		{"port 443", envMap("ECR", seedECR, "PORT", "443"), "", 1024, `http.addr ":443": port 443 is below 1024`},
		{"port 443 where the sysctl allows it", envMap("ECR", seedECR, "PORT", "443"), "", 0, ""},
		{"a debug port below 1024", envMap("ECR", seedECR, "PORT", "5000"), "REGISTRY_HTTP_DEBUG_ADDR=127.0.0.1:80", 1024, `http.debug.addr "127.0.0.1:80"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if k, v, ok := strings.Cut(c.env, "="); ok {
				t.Setenv(k, v) // distribution reads its overrides from the process
			}
			s, err := loadSettings("", c.lookup)
			if err != nil {
				t.Fatal(err)
			}
			err = checkPorts(s, c.start)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "-p 443:5000")):
				t.Errorf("error %v, want one saying %q and what to do", err, c.want)
			}
		})
	}
}

//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
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
	c := fileCopy{original: path, variable: "SSL_KEY", fd: fd}
	defer closeCopies([]fileCopy{c})

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

func TestFilesToCopy(t *testing.T) {
	cert, key := writeCertPair(t, t.TempDir(), "proxy")
	tlsFile := writeFile(t, "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/cache\nproxy:\n  remoteurl: "+seedECR+
		"\necr:\n  push: disabled\nhttp:\n  tls:\n    certificate: "+cert+"\n    key: "+key+"\n")
	seed := []string{"ECR", seedECR, "PORT", "5000", "ENABLE_SSL", "true", "SSL_KEY", key, "SSL_CERTIFICATE", cert}
	for _, c := range []struct {
		name, path string
		lookup     lookupFunc
		want       []string // variable=original
	}{
		{"the seed's TLS variables and ~/.aws", "", envMap(append(seed, "HOME", "/root")...),
			[]string{"SSL_KEY=" + key, "SSL_CERTIFICATE=" + cert,
				"AWS_SHARED_CREDENTIALS_FILE=/root/.aws/credentials", "AWS_CONFIG_FILE=/root/.aws/config"}},
		{"a configuration file's http.tls, AWS files named", tlsFile, envMap("AWS_SHARED_CREDENTIALS_FILE", "/run/creds",
			"AWS_CONFIG_FILE", "/run/config", "AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
			[]string{"REGISTRY_HTTP_TLS_KEY=" + key, "REGISTRY_HTTP_TLS_CERTIFICATE=" + cert,
				"AWS_SHARED_CREDENTIALS_FILE=/run/creds", "AWS_CONFIG_FILE=/run/config", "AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/token"}},
		{"no TLS, no HOME", "", envMap("ECR", seedECR, "PORT", "5000"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := loadSettings(c.path, c.lookup)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range filesToCopy(s, c.lookup) {
				got = append(got, f.variable+"="+f.original)
				if f.optional != strings.HasPrefix(f.variable, "AWS_") {
					t.Errorf("%s: optional %v", f.variable, f.optional)
				}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("files %q, want %q", got, c.want)
			}
		})
	}
}

func TestOpenAndUseCopies(t *testing.T) {
	dir := t.TempDir()
	readable := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(readable, []byte("cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Opening these fails, as a root-only file does after the drop.
	unreadable := filepath.Join(dir, "gone", "key.pem")
	missingAWS := filepath.Join(dir, ".aws", "credentials")
	copies, err := openCopies([]fileCopy{
		{original: readable, variable: "SSL_CERTIFICATE"},
		{original: missingAWS, variable: "AWS_SHARED_CREDENTIALS_FILE", optional: true},
	}, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	if len(copies) != 1 || copies[0].variable != "SSL_CERTIFICATE" {
		t.Fatalf("copies %+v: want the certificate's alone (a missing optional file is skipped)", copies)
	}
	if _, err := openCopies([]fileCopy{{original: unreadable, variable: "SSL_KEY"}}, os.Getuid(), os.Getgid()); err == nil ||
		!strings.Contains(err.Error(), "SSL_KEY") {
		t.Errorf("a missing key: %v, want an error naming SSL_KEY", err)
	}

	// As the user: the readable original is used, the other one's copy.
	copies = append(copies, fileCopy{original: unreadable, variable: "SSL_KEY"})
	copies[1].fd, err = memCopy(readable, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatal(err)
	}
	log := logrus.New()
	var logs bytes.Buffer
	log.SetOutput(&logs)
	set := map[string]string{}
	if err := useCopies(copies, func(k, v string) error { set[k] = v; return nil }, log); err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"SSL_KEY": copies[1].path()}; !reflect.DeepEqual(set, want) {
		t.Errorf("set %v, want %v", set, want)
	}
	if b, err := os.ReadFile(set["SSL_KEY"]); err != nil || string(b) != "cert" {
		t.Errorf("the copy reads %q, %v", b, err)
	}
	if _, err := os.Stat(copies[0].path()); err == nil {
		t.Error("the copy of a readable file is still open")
	}
	if !strings.Contains(logs.String(), "SSL_KEY "+unreadable+" is not readable by UID 65532") {
		t.Errorf("log %q does not say which file is served from a copy", logs.String())
	}
	closeCopies(copies[1:])
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

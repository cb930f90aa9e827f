//go:build linux

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// dropPrivilegesEnv, set to "true" by the image, makes serve started as
// root drop to the unprivileged user; without it root is kept, as the
// operator who started it chose.
const dropPrivilegesEnv = "ECR_PROXY_DROP_PRIVILEGES"

// The user serve runs as when it is started as root: 65532, "nonroot" in
// the image's /etc/passwd, as in distroless images.
const (
	unprivilegedUID = 65532
	unprivilegedGID = 65532
)

// withPrivilegeDrop makes serve safe to start as root, which is how the
// seed's `docker run` line starts the image: docker creates a missing
// bind-mounted cache directory owned by root, and TLS keys are commonly
// root's with mode 0600. Started as root, serve first takes what only
// root may (ownership of the cache directory, the TLS files' contents),
// then becomes UID/GID 65532 for good, before anything is served; see
// dropPrivileges. Started as any other user it changes nothing, and only
// turns a cache directory it cannot write into a message that says what
// to do.
//
// Why in the binary and not in an entrypoint script or a USER line: the
// image is scratch (no shell, no su-exec), USER alone cannot read a root
// key or write a root-owned bind mount, and a process that keeps root or
// capabilities while serving is what must not happen. The drop happens
// once, in the process itself, before any listener or goroutine of the
// server exists, and it is checked (regaining root must fail).
func withPrivilegeDrop(cmd *cobra.Command) *cobra.Command {
	cmd.PreRunE = func(_ *cobra.Command, args []string) error {
		return prepareToServe(args, os.LookupEnv, os.Setenv, logrus.StandardLogger().WithField("component", "privdrop"))
	}
	return cmd
}

// prepareToServe runs before serve: as root it gives the cache directory
// to the unprivileged user, keeps private copies of the files serve reads
// that this user cannot (TLS, AWS credentials), and drops privileges;
// otherwise it checks that the cache directory is writable. setenv points
// serve's configuration at the copies.
func prepareToServe(args []string, lookup lookupFunc, setenv func(key, value string) error, log logrus.FieldLogger) error {
	path, err := configPath(args, lookup)
	if err != nil {
		return err // serve says the same, with no privileges to drop
	}
	s, err := loadSettings(path, lookup)
	if err != nil {
		if os.Geteuid() != 0 && errors.Is(err, fs.ErrPermission) {
			return fmt.Errorf("%w (the proxy runs as UID %d: make the file readable by it, "+
				"or start the container as root, the image's default, so that it reads the file before dropping to UID %d)",
				err, os.Geteuid(), unprivilegedUID)
		}
		return err
	}
	dirs := writableDirs(s)
	if os.Geteuid() == 0 {
		if v, _ := lookup(dropPrivilegesEnv); v != "true" {
			// Root outside the image (a host's service manager, a
			// developer, the tests): the operator chose the user.
			return nil
		}
	}
	if os.Geteuid() != 0 {
		for _, dir := range dirs {
			if err := checkWritable(dir); err != nil {
				return cacheDirError(dir, err, os.Geteuid())
			}
		}
		return nil
	}

	if err := checkPorts(s, unprivilegedPortStart()); err != nil {
		return err
	}
	for _, dir := range dirs {
		n, err := takeOwnership(dir, unprivilegedUID, unprivilegedGID)
		if err != nil {
			return cacheDirError(dir, err, 0)
		}
		if n > 0 {
			log.Infof("started as root: %s given to UID %d, GID %d (%d entries changed, the directory included)", dir, unprivilegedUID, unprivilegedGID, n)
		}
	}
	copies, err := openCopies(filesToCopy(s, lookup), unprivilegedUID, unprivilegedGID)
	if err != nil {
		return err
	}
	if err := dropPrivileges(unprivilegedUID, unprivilegedGID); err != nil {
		return err
	}
	log.Infof("started as root: now running as UID %d, GID %d, with no supplementary groups and no capabilities", unprivilegedUID, unprivilegedGID)
	for _, dir := range dirs {
		if err := checkWritable(dir); err != nil {
			return cacheDirError(dir, err, unprivilegedUID)
		}
	}
	return useCopies(copies, setenv, log)
}

// unprivilegedPortStart is the lowest TCP port a user other than root may
// bind in this network namespace (1024 when it cannot be read).
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 1024
	}
	return n
}

// checkPorts refuses, before the drop, TCP listen addresses (http.addr,
// http.debug.addr) the unprivileged user could not bind: ports below
// start.
func checkPorts(s *settings, start int) error {
	for _, a := range []struct{ key, net, addr string }{
		{"http.addr", s.dist.HTTP.Net, s.dist.HTTP.Addr},
		{"http.debug.addr", "", s.dist.HTTP.Debug.Addr},
	} {
		if a.addr == "" || (a.net != "" && !strings.HasPrefix(a.net, "tcp")) {
			continue
		}
		_, p, err := net.SplitHostPort(a.addr)
		if err != nil {
			continue // serve says what is wrong with it
		}
		port, err := strconv.Atoi(p)
		if err != nil || port == 0 || port >= start {
			continue
		}
		return fmt.Errorf("%s %q: port %d is below %d (net.ipv4.ip_unprivileged_port_start), which only root may bind, "+
			"and the proxy does not serve as root (it runs as UID %d): listen on a port from %d, such as PORT=5000, "+
			"and publish it as the port clients use (docker run -p 443:5000, without --net=host), "+
			"or lower that sysctl (docker run --sysctl net.ipv4.ip_unprivileged_port_start=%d, without --net=host)",
			a.key, a.addr, port, start, unprivilegedUID, start, port)
	}
	return nil
}

// writableDirs are the directories serve writes into: the cache of a
// filesystem driver and ecr.spooldir (the default spool is inside the
// cache). Other drivers have no local directory.
func writableDirs(s *settings) []string {
	var dirs []string
	switch s.dist.Storage.Type() {
	case "filesystem", lruDriver:
		root, _ := s.dist.Storage.Parameters()["rootdirectory"].(string)
		if root == "" {
			root = "/var/lib/registry" // distribution's default
		}
		dirs = append(dirs, filepath.Clean(root))
	}
	if sd := s.ecr.SpoolDir; sd != "" {
		sd = filepath.Clean(sd)
		inside := false
		for _, d := range dirs {
			if sd == d || strings.HasPrefix(sd, d+string(filepath.Separator)) {
				inside = true
			}
		}
		if !inside {
			dirs = append(dirs, sd)
		}
	}
	return dirs
}

// takeOwnership creates dir if needed and makes it, and everything in it,
// owned by uid:gid, without following symbolic links (and through an
// os.Root, so that no path in it can lead outside). It returns how many
// entries it changed (dir included). A cache a previous run left stays
// usable: its blobs can be evicted and its directories written.
func takeOwnership(dir string, uid, gid int) (int, error) {
	if err := makeDir(dir); err != nil {
		return 0, fmt.Errorf("create: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	n := 0
	err = fs.WalkDir(root.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
		if err := root.Lchown(path, uid, gid); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("give it to UID %d, GID %d: %w", uid, gid, err)
	}
	return n, nil
}

// makeDir creates dir (0750) and any missing parent (0755: the user the
// proxy drops to must be able to reach dir through them).
func makeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil { //nolint:gosec // parents others must traverse
		return err
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// checkWritable creates and removes a file in dir (created if missing),
// as the current user.
func checkWritable(dir string) error {
	if err := makeDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".ecr-proxy-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// cacheDirError explains why dir cannot be the cache, and what to do.
// uid is the user that tried: 0 for the ownership change as root.
func cacheDirError(dir string, err error, uid int) error {
	owner := ""
	if fi, serr := os.Stat(dir); serr == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			owner = fmt.Sprintf(" (owner %d:%d, mode %04o)", st.Uid, st.Gid, fi.Mode().Perm())
		}
	}
	hint := ""
	switch {
	case errors.Is(err, syscall.EROFS):
		hint = "it is on a read-only mount: the cache needs a writable directory; mount it read-write (no :ro, no --read-only for a volume) or set CACHE_DIR to one"
	case errors.Is(err, syscall.EINVAL) && uid == 0:
		hint = fmt.Sprintf("UID %d has no mapping in this user namespace (a rootless engine whose user has too few subordinate IDs, /proc/self/uid_map: %s): "+
			"give the user at least 65536 IDs in /etc/subuid and /etc/subgid, or run the container as the directory's owner with --user <uid>:<gid>",
			unprivilegedUID, uidMap())
	case uid == 0:
		hint = fmt.Sprintf("as root, the proxy gives the cache directory to UID %d and then drops to it, and that failed "+
			"(the container lacks CAP_CHOWN, or the filesystem refuses root, such as NFS with root_squash): "+
			"run `chown -R %d:%d` on the directory once on the host, or run the container as the directory's owner with --user <uid>:<gid>",
			unprivilegedUID, unprivilegedUID, unprivilegedGID)
	default:
		hint = fmt.Sprintf("the proxy runs as UID %d and cannot write there: start the container as root (the image's default: "+
			"it then gives the directory to UID %d and drops to it), or run `chown -R %d:%d` on the directory on the host, "+
			"or run the container with --user set to the directory's owner",
			uid, unprivilegedUID, unprivilegedUID, unprivilegedGID)
	}
	return fmt.Errorf("cache directory %s%s: %w; %s", dir, owner, err, hint)
}

// uidMap is this process's user namespace mapping, on one line.
func uidMap() string {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return "unreadable"
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// fileCopy is a file serve reads, read as root into memory so that the
// unprivileged user can read it through /proc/self/fd when the original
// is not readable by it (a key mode 0600, a credentials file mounted from
// another user's home).
type fileCopy struct {
	original string // path as configured
	variable string // the variable that points serve at the copy
	// later says what reading a copy taken at start means.
	later string
	// optional files that do not exist are not copied (AWS's defaults).
	optional bool
	fd       int // memfd holding the content, owned by the user, 0400
}

// path is how the copy is opened, by this process only.
func (c fileCopy) path() string { return fmt.Sprintf("/proc/self/fd/%d", c.fd) }

// AWS's variables for the files its SDK reads: the shared credentials
// and config files (default in ~/.aws) and a web identity token.
const (
	envAWSCredentialsFile = "AWS_SHARED_CREDENTIALS_FILE" //nolint:gosec // a variable's name, not a credential
	envAWSConfigFile      = "AWS_CONFIG_FILE"
	envAWSTokenFile       = "AWS_WEB_IDENTITY_TOKEN_FILE" //nolint:gosec // a variable's name, not a credential
)

// filesToCopy lists the files serve reads that may be readable by root
// only: http.tls.key and http.tls.certificate, and the AWS SDK's shared
// credentials, config and web identity token files (the seed's users
// mount ~/.aws into the container). Each names the variable that points
// serve at a copy: SSL_KEY and SSL_CERTIFICATE where the path came from
// them, else distribution's REGISTRY_HTTP_TLS_*; AWS's own for its files.
func filesToCopy(s *settings, lookup lookupFunc) []fileCopy {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	var files []fileCopy
	renewed := fmt.Sprintf("a renewed file is used only after a restart, unless it is made readable by UID %d or GID %d "+
		"(for example chgrp %d and chmod 0640 on the host)", unprivilegedUID, unprivilegedGID, unprivilegedGID)
	for _, f := range []struct{ path, seedVar, distVar string }{
		{s.dist.HTTP.TLS.Key, envSSLKey, "REGISTRY_HTTP_TLS_KEY"},
		{s.dist.HTTP.TLS.Certificate, envSSLCertificate, "REGISTRY_HTTP_TLS_CERTIFICATE"},
	} {
		if f.path == "" {
			continue
		}
		v := f.distVar
		if get(f.seedVar) == f.path {
			v = f.seedVar
		}
		files = append(files, fileCopy{original: f.path, variable: v, later: renewed})
	}
	home := get("HOME")
	for _, f := range []struct{ variable, def, later string }{
		{envAWSCredentialsFile, ".aws/credentials", "changes need a restart, as they do anyway"},
		{envAWSConfigFile, ".aws/config", "changes need a restart, as they do anyway"},
		{envAWSTokenFile, "", fmt.Sprintf("a rotated token is not seen: make the file readable by UID %d or GID %d", unprivilegedUID, unprivilegedGID)},
	} {
		path := get(f.variable)
		if path == "" && f.def != "" && home != "" {
			path = filepath.Join(home, f.def)
		}
		if path != "" {
			files = append(files, fileCopy{original: path, variable: f.variable, later: f.later, optional: true})
		}
	}
	return files
}

// openCopies reads files into memory files (memfd: never on a disk, gone
// with the process) that uid:gid may read, skipping optional files that
// do not exist. The copies are used only where the user cannot read the
// originals (see useCopies).
func openCopies(files []fileCopy, uid, gid int) ([]fileCopy, error) {
	var copies []fileCopy
	for _, f := range files {
		if f.optional {
			if fi, err := os.Stat(f.original); err != nil || !fi.Mode().IsRegular() {
				continue
			}
		}
		fd, err := memCopy(f.original, uid, gid)
		if err != nil {
			closeCopies(copies)
			return nil, fmt.Errorf("%s: %w", f.variable, err)
		}
		f.fd = fd
		copies = append(copies, f)
	}
	return copies, nil
}

// memCopy copies the file at path into a new memfd owned by uid:gid, mode
// 0400, sealed, closed on exec (the proxy's own child processes never
// see it).
func memCopy(path string, uid, gid int) (int, error) {
	content, err := os.ReadFile(path) //nolint:gosec // the operator's own file
	if err != nil {
		return -1, fmt.Errorf("read %s as root: %w", path, err)
	}
	fd, err := unix.MemfdCreate("ecr-proxy-file", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, fmt.Errorf("copy %s into memory: %w", path, err)
	}
	fail := func(err error) (int, error) {
		_ = unix.Close(fd)
		return -1, fmt.Errorf("copy %s into memory: %w", path, err)
	}
	for b := content; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return fail(err)
		}
		b = b[n:]
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fail(err)
	}
	if err := unix.Fchmod(fd, 0o400); err != nil {
		return fail(err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fail(err)
	}
	return fd, nil
}

// closeCopies releases copies no longer needed.
func closeCopies(copies []fileCopy) {
	for _, c := range copies {
		_ = unix.Close(c.fd)
	}
}

// useCopies runs as the unprivileged user: a file it can read is used as
// configured (a renewed TLS pair is then picked up without a restart),
// one it cannot is replaced by its copy, by setting the copy's variable.
func useCopies(copies []fileCopy, setenv func(key, value string) error, log logrus.FieldLogger) error {
	for _, c := range copies {
		f, err := os.Open(c.original)
		if err == nil {
			_ = f.Close()
			_ = unix.Close(c.fd)
			continue
		}
		if err := setenv(c.variable, c.path()); err != nil {
			return fmt.Errorf("set %s: %w", c.variable, err)
		}
		log.Infof("%s %s is not readable by UID %d (%v): using its copy read as root at start; %s",
			c.variable, c.original, unprivilegedUID, err, c.later)
	}
	return nil
}

// dropPrivileges makes every thread of the process uid:gid with no
// supplementary groups (Go applies setuid/setgid to all threads), which
// also clears every capability. It then checks that root cannot be
// regained.
func dropPrivileges(uid, gid int) error {
	hint := fmt.Sprintf("the proxy starts as root only to take the cache directory and read root's files (TLS key, AWS credentials), then runs as UID %d; "+
		"this needs CAP_SETUID and CAP_SETGID (do not --cap-drop them), or start it as a non-root user with --user %d:%d "+
		"and a cache directory that user owns", uid, uid, gid)
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop supplementary groups: %w; %s", err, hint)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w; %s", gid, err, hint)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w; %s", uid, err, hint)
	}
	if syscall.Getuid() != uid || syscall.Geteuid() != uid || syscall.Getgid() != gid || syscall.Getegid() != gid {
		return fmt.Errorf("privileges not dropped: uid %d euid %d gid %d egid %d, want %d:%d",
			syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid(), uid, gid)
	}
	if err := syscall.Setuid(0); err == nil {
		return errors.New("privileges not dropped: setuid 0 still succeeds")
	}
	return nil
}

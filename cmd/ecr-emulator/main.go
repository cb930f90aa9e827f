// Command ecr-emulator runs the offline ECR emulator (package
// internal/ecrtest) on loopback until SIGINT or SIGTERM. It prints the
// environment a client needs as shell "export" lines on stdout (and, with
// -env-file, into that file once it is ready), among them the registry
// login (ECR_EMULATOR_USER, ECR_EMULATOR_PASSWORD), and logs to stderr:
//
//	ecr-emulator -seed team/app:1.0 -env-file /tmp/emu.env 2>/tmp/emu.log &
//	until [ -s /tmp/emu.env ]; do sleep 0.1; done
//	. /tmp/emu.env
//
// (`eval "$(ecr-emulator &)"` hangs: the shell waits for the emulator's
// stdout to close.) See README.md beside this file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/ecr-proxy/ecr-proxy/internal/ecrtest"
	"github.com/sirupsen/logrus"
)

// seedFlags collects repeated -seed values.
type seedFlags []string

func (s *seedFlags) String() string     { return strings.Join(*s, ",") }
func (s *seedFlags) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(); err != nil {
		logrus.Errorf("ecr-emulator: %v", err)
		os.Exit(1)
	}
}

func run() error {
	var seeds seedFlags
	registryAddr := flag.String("registry-addr", "127.0.0.1:5100", "registry (ECR) listen address, loopback only")
	apiAddr := flag.String("api-addr", "127.0.0.1:5101", "AWS API (ECR, STS, IMDS, container credentials) listen address")
	s3Addr := flag.String("s3-addr", "127.0.0.2:5102", "S3 listen address (another loopback IP than the registry)")
	region := flag.String("region", ecrtest.DefaultRegion, "AWS region")
	account := flag.String("account", ecrtest.DefaultAccountID, "AWS account ID")
	lifetime := flag.Duration("token-lifetime", ecrtest.DefaultTokenLifetime, "registry token lifetime")
	pageSize := flag.Int("tags-page-size", ecrtest.DefaultTagsPageSize, "tags/list page size when the client sends no n")
	mounting := flag.Bool("blob-mounting", false, "allow cross-repository blob mounting")
	headRedirect := flag.Bool("head-redirect", false, "answer blob HEAD with 307 like GET")
	sha512 := flag.Bool("sha512", false, "support sha512 digests (upload completion, manifests by digest), as the OCI conformance suite's registry does; ECR stores sha256 only")
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Var(&seeds, "seed", "seed a small demo image at repo:tag (repeatable)")
	envFile := flag.String("env-file", "", "also write the export lines to this file, once the emulator is ready")
	flag.Parse()

	lvl, err := logrus.ParseLevel(*level)
	if err != nil {
		return fmt.Errorf("parsing -log-level: %w", err)
	}
	logrus.SetOutput(os.Stderr)
	logrus.SetLevel(lvl)

	e, err := ecrtest.Start(
		ecrtest.WithRegistryAddr(*registryAddr), ecrtest.WithAPIAddr(*apiAddr), ecrtest.WithS3Addr(*s3Addr),
		ecrtest.WithRegion(*region), ecrtest.WithAccountID(*account), ecrtest.WithTokenLifetime(*lifetime),
		ecrtest.WithTagsPageSize(*pageSize), ecrtest.WithBlobMounting(*mounting), ecrtest.WithHEADRedirect(*headRedirect),
		ecrtest.WithSHA512(*sha512),
		ecrtest.WithLogger(logrus.StandardLogger()),
	)
	if err != nil {
		return err
	}
	defer func() {
		if err := e.Close(); err != nil {
			logrus.Errorf("closing emulator: %v", err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	seeded, err := seed(ctx, e, seeds, lvl)
	if err != nil {
		return err
	}
	for _, s := range seeded {
		logrus.Infof("seeded %s", s)
	}
	exports, err := exportLines(e)
	if err != nil {
		return err
	}
	fmt.Print(exports)
	if *envFile != "" {
		if err := writeFileAtomic(*envFile, exports); err != nil {
			return err
		}
	}
	logrus.Infof("ECR emulator: registry %s, AWS API %s, S3 %s; region %s, account %s", e.RegistryURL(), e.APIURL(), e.S3URL(), e.Region(), e.AccountID())

	<-ctx.Done()
	logrus.Info("shutting down")
	return nil
}

// seed pushes a small random image at each of refs. The embedded registry
// logs the existence checks of a push (HEAD answered 404) at error level:
// they are expected, so its log is quiet meanwhile (failures are
// returned). It returns ref@digest of each image.
func seed(ctx context.Context, e *ecrtest.Emulator, refs []string, lvl logrus.Level) ([]string, error) {
	logrus.SetLevel(logrus.FatalLevel)
	defer logrus.SetLevel(lvl)
	var seeded []string
	for _, ref := range refs {
		img, err := ecrtest.RandomImage(2, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", ref, err)
		}
		digest, err := e.Seed(ctx, ref, img)
		if err != nil {
			return nil, fmt.Errorf("seed %s: %w", ref, err)
		}
		seeded = append(seeded, ref+"@"+digest)
	}
	return seeded, nil
}

// exportLines is the environment a client needs, as shell export lines:
// the AWS variables, ECR, and a registry login for crane or docker.
func exportLines(e *ecrtest.Emulator) (string, error) {
	var b strings.Builder
	for _, kv := range e.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%q\n", k, v)
	}
	user, password, err := e.Token()
	if err != nil {
		return "", fmt.Errorf("mint a registry login: %w", err)
	}
	fmt.Fprintf(&b, "# registry login (crane auth login / docker login %s), valid 12 h by default (-token-lifetime):\n",
		strings.TrimPrefix(e.RegistryURL(), "http://"))
	fmt.Fprintf(&b, "export ECR_EMULATOR_USER=%q\nexport ECR_EMULATOR_PASSWORD=%q\n", user, password)
	fmt.Fprintf(&b, "# IMDS: AWS_EC2_METADATA_SERVICE_ENDPOINT=%s\n", e.IMDSURL())
	fmt.Fprintf(&b, "# container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI=%s AWS_CONTAINER_AUTHORIZATION_TOKEN=%s\n",
		e.ContainerCredentialsURL(), e.ContainerAuthToken())
	return b.String(), nil
}

// writeFileAtomic writes content to path through a temporary file, so
// that a reader waiting for the file never sees it half written.
func writeFileAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write -env-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write -env-file: %w", err)
	}
	return nil
}

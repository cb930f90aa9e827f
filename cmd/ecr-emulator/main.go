// Command ecr-emulator runs the offline ECR emulator (package
// internal/ecrtest) on loopback until SIGINT or SIGTERM. It prints the
// environment a client needs as shell "export" lines on stdout and logs to
// stderr:
//
//	eval "$(ecr-emulator -seed team/app:1.0 &)"
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
	level := flag.String("log-level", "info", "log level (debug, info, warn, error)")
	flag.Var(&seeds, "seed", "seed a small demo image at repo:tag (repeatable)")
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
	for _, ref := range seeds {
		img, err := ecrtest.RandomImage(2, 64<<10)
		if err != nil {
			return err
		}
		digest, err := e.Seed(ctx, ref, img)
		if err != nil {
			return err
		}
		logrus.Infof("seeded %s@%s", ref, digest)
	}

	for _, kv := range e.Env() {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Printf("export %s=%q\n", k, v)
	}
	fmt.Printf("# IMDS: AWS_EC2_METADATA_SERVICE_ENDPOINT=%s\n", e.IMDSURL())
	fmt.Printf("# container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI=%s AWS_CONTAINER_AUTHORIZATION_TOKEN=%s\n", e.ContainerCredentialsURL(), e.ContainerAuthToken())
	logrus.Infof("ECR emulator: registry %s, AWS API %s, S3 %s; region %s, account %s", e.RegistryURL(), e.APIURL(), e.S3URL(), e.Region(), e.AccountID())

	<-ctx.Done()
	logrus.Info("shutting down")
	return nil
}

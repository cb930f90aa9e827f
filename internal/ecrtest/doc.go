// Package ecrtest is an offline emulator of Amazon ECR and of the AWS
// endpoints an ECR client talks to, for tests and local development.
//
// Start (or New in tests) brings up three loopback servers:
//
//   - the registry endpoint (RegistryURL): a real distribution v3 registry on
//     in-memory storage behind a handler that behaves like ECR's: Basic
//     "AWS:<token>" authentication with ECR's 401 challenge and 403 for
//     expired tokens, blob GETs redirected (307) to a presigned URL on the
//     S3 server, paginated tags/list, PATCH answered 201 with ECR's 5 MiB
//     minimum part size, and cross-repository mounting off by default;
//   - the S3 server (on 127.0.0.2 by default, so that Go's http.Client drops
//     Authorization on the redirect) serving presigned blob URLs, refusing
//     any request that carries an Authorization header;
//   - the AWS API server (APIURL): ECR GetAuthorizationToken (AWS JSON 1.1,
//     SigV4 checked by re-signing), STS GetCallerIdentity and
//     AssumeRoleWithWebIdentity, EC2 IMDSv2 and the container credentials
//     endpoint, so that aws-sdk-go-v2's credential chain works offline.
//
// Several registries (accounts, regions) are several emulators: an
// APIFront gives them one AWS API endpoint, as an SDK has one ECR and one
// STS endpoint for every region, and sends each signed request to the
// emulator of its SigV4 region. WithAssumedRoleOnly makes a registry
// reachable only through an assumed role with an external ID, as another
// account's registry is.
//
// Faults (throttled or denied mints, registry errors, cut or stalled S3
// bodies, the registry going down) and counters per request kind let tests
// assert how a client behaves. Time used for token expiry comes from an
// injectable clock; tests never need to sleep.
//
// The emulator keeps all of its state in the Emulator value: several
// emulators can run in one process. The embedded distribution registry logs
// through logrus' standard logger, which this package does not touch.
package ecrtest

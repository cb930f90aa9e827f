package main

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
)

// Variables of the shared cache in an S3 bucket (distribution's s3 driver),
// for a container configured from the environment: several replicas then
// serve from one cache.
const (
	// envCacheS3Bucket switches the cache to the s3 driver, in this bucket.
	envCacheS3Bucket = "CACHE_S3_BUCKET"
	// envCacheS3Region is the bucket's region (default: the ECR region).
	envCacheS3Region = "CACHE_S3_REGION"
	// envCacheS3Endpoint is an S3-compatible endpoint (MinIO, Ceph).
	envCacheS3Endpoint = "CACHE_S3_ENDPOINT"
	// envCacheS3Prefix is the key prefix in the bucket (rootdirectory).
	envCacheS3Prefix = "CACHE_S3_PREFIX"
	// envCacheS3PathStyle asks for path-style URLs (most on-premises stores).
	envCacheS3PathStyle = "CACHE_S3_FORCE_PATH_STYLE"
	// envCacheS3AccessKey and envCacheS3SecretKey are static keys for the
	// bucket alone; without them the AWS credential chain is used.
	envCacheS3AccessKey = "CACHE_S3_ACCESS_KEY_ID"
	envCacheS3SecretKey = "CACHE_S3_SECRET_ACCESS_KEY" //nolint:gosec // a variable's name, not a credential
)

// s3Driver is the storage driver name of distribution's S3 driver.
const s3Driver = "s3"

// s3Parameters returns the parameters distribution's s3 driver reads.
func s3Parameters() []string {
	return []string{
		"accelerate", "accesskey", "bucket", "chunksize", "encrypt", "forcepathstyle", "keyid", "loglevel",
		"multipartcopychunksize", "multipartcopymaxconcurrency", "multipartcopythresholdsize", "objectacl",
		"redirectendpoint", "region", "regionendpoint", "rootdirectory", "secretkey", "secure", "skipverify",
		"storageclass", "usedualstack", "usefipsendpoint", "useragent",
	}
}

// applyS3 maps the CACHE_S3_* variables onto storage.s3. A bucket
// switches the cache from a filesystem driver to s3 (and the downloads
// in flight, unless SPOOL_DIR or ecr.spooldir says otherwise, to the
// directory the cache was in); the other variables need the bucket or an
// s3 driver in the file.
func (e *seedEnv) applyS3(s *settings) error {
	cfg := s.dist
	bucket, bucketSet := e.get(envCacheS3Bucket)
	driver := cfg.Storage.Type()
	if !bucketSet && driver != s3Driver {
		for _, v := range []string{envCacheS3Region, envCacheS3Endpoint, envCacheS3Prefix, envCacheS3PathStyle, envCacheS3AccessKey, envCacheS3SecretKey} {
			if _, ok := e.get(v); ok {
				return fmt.Errorf("%s needs %s (or storage.s3 in the configuration file); the configuration uses %q", v, envCacheS3Bucket, driver)
			}
		}
		return nil
	}
	params := cfg.Storage.Parameters()
	if driver != s3Driver {
		// The cache directory, with nothing else to hold now, holds the
		// downloads in flight (in the image: its volume, the only
		// directory the proxy's user may write).
		if root, ok := params["rootdirectory"].(string); ok && root != "" && s.ecr.SpoolDir == "" {
			s.ecr.SpoolDir = filepath.Join(root, "ecr-proxy-spool")
		}
		delete(cfg.Storage, driver)
		params = configuration.Parameters{}
		cfg.Storage[s3Driver] = params
		e.notes = append(e.notes, fmt.Sprintf("%s: the cache is the S3 bucket %s (storage driver %s replaces %s)", envCacheS3Bucket, bucket, s3Driver, driver))
	}
	if bucketSet {
		params["bucket"] = bucket
	}
	if v, ok := e.get(envCacheS3Region); ok {
		params["region"] = v
	}
	if v, ok := e.get(envCacheS3Endpoint); ok {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.User != nil {
			return fmt.Errorf("%s=%q: want the URL of an S3-compatible endpoint, such as https://minio.internal:9000 (scheme and host, no path)", envCacheS3Endpoint, v)
		}
		params["regionendpoint"] = u.Scheme + "://" + u.Host
		params["secure"] = u.Scheme == "https"
	}
	if v, ok := e.get(envCacheS3Prefix); ok {
		params["rootdirectory"] = "/" + strings.Trim(v, "/")
	}
	if v, ok := e.get(envCacheS3PathStyle); ok {
		on, err := parseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: want true or false", envCacheS3PathStyle, v)
		}
		params["forcepathstyle"] = on
	}
	key, keySet := e.get(envCacheS3AccessKey)
	secret, secretSet := e.get(envCacheS3SecretKey)
	if keySet != secretSet {
		return fmt.Errorf("%s and %s go together: set both, or neither to use the AWS credential chain", envCacheS3AccessKey, envCacheS3SecretKey)
	}
	if keySet {
		params["accesskey"], params["secretkey"] = key, secret
	}
	return nil
}

// checkS3 checks storage.s3, defaults its region to the ECR region (a
// bucket in the same region as ECR is the usual setup), and turns
// distribution's redirects to the bucket off unless storage.redirect
// says otherwise.
func (s *settings) checkS3() error {
	if s.dist.Storage.Type() != s3Driver {
		return nil
	}
	params := s.dist.Storage.Parameters()
	if b, ok := params["bucket"]; !ok || fmt.Sprint(b) == "" {
		return fmt.Errorf("storage.%s.bucket is required (%s)", s3Driver, envCacheS3Bucket)
	}
	if _, ok := s.dist.Storage["redirect"]; !ok {
		// distribution redirects blob hits to the bucket unless told not
		// to: here that is opt-in (storage.redirect.disable: false).
		s.dist.Storage["redirect"] = configuration.Parameters{"disable": true}
	}
	if r, ok := params["region"]; !ok || r == nil || fmt.Sprint(r) == "" {
		if s.region == "" {
			return errors.New("storage.s3.region is required: no ECR region to default to (" + envCacheS3Region + ")")
		}
		params["region"] = s.region
	}
	return nil
}

// s3Location names an s3 cache for the start-up log: s3://bucket/prefix,
// and the endpoint when it is not AWS's.
func s3Location(st configuration.Storage) (string, bool) {
	if st.Type() != s3Driver {
		return "", false
	}
	p := st.Parameters()
	loc := "s3://" + fmt.Sprint(p["bucket"])
	if root, ok := p["rootdirectory"]; ok && root != nil {
		loc += "/" + strings.Trim(fmt.Sprint(root), "/")
	}
	if ep, ok := p["regionendpoint"]; ok && ep != nil && fmt.Sprint(ep) != "" {
		loc += " at " + fmt.Sprint(ep)
	}
	return loc, true
}

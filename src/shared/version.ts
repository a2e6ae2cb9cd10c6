/** The package version, sent in the client's default `User-Agent`. A test keeps it equal to package.json. */
export const VERSION = '0.1.0';

/**
 * The Redis store (`m2m-guard/redis`): a cache level shared by every instance of a service,
 * with revocations broadcast to all of them. Needs `ioredis` installed beside m2m-guard.
 */
export { createRedisStore, type RedisStore, type RedisStoreOptions } from './redis-store.js';

// `express4` is an npm alias of express 4.22.3 and ships no types of its own: type it as express.
declare module 'express4' {
  import express from 'express';
  export default express;
}

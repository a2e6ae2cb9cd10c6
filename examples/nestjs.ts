/**
 * m2m-guard in NestJS (here on the Express platform; `FastifyAdapter` works the same):
 * `M2MAuthGuard` verifies the token and sets `request.m2m`, `requireMachine()` is a guard listed
 * after it, and `@M2M()` gives the handler the verified auth. Needs `experimentalDecorators`
 * (as every NestJS app does); no decorator metadata.
 *
 * Run: npx tsx examples/nestjs.ts (an in-process emulator stands in for Clerk)
 */
import 'reflect-metadata';
import { Controller, Get, Module, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
// In an app: from 'm2m-guard/nestjs'.
import { M2M, M2MAuthGuard, type M2MRequestAuth, requireMachine } from '../src/nestjs/index.js';
import { callAll, overHttp, runAsProgram, startScenario } from './support/scenario.js';

export async function main(log: (line: string) => void = console.log): Promise<void> {
  const scenario = await startScenario();
  const authGuard = new M2MAuthGuard(scenario.options);

  @Controller('internal')
  @UseGuards(authGuard, requireMachine(scenario.apiMachineId))
  class OrdersController {
    @Get('orders')
    list(@M2M() auth: M2MRequestAuth) {
      return { calledBy: auth.subject };
    }
  }

  @Module({ controllers: [OrdersController] })
  class AppModule {}

  const app = await NestFactory.create(AppModule, { logger: false });
  try {
    await app.listen(0, '127.0.0.1');
    const url = (await app.getUrl()).replace('[::1]', '127.0.0.1');
    await callAll(overHttp(url), '/internal/orders', scenario, log);
  } finally {
    await app.close();
    await authGuard.close();
    await scenario.close();
  }
}

runAsProgram(import.meta.url, 'nestjs', main);

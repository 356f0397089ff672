/**
 * The embedded Dispatcher: the operation executor of this process, seen through the seam. The
 * executor already has every method of a Dispatcher with the same meaning, so the local
 * dispatcher is the executor itself; this function is where the compiler checks that it fits.
 */
import { type OperationExecutor } from '@annex-p2phttp/ops';
import { type Dispatcher } from './dispatcher';

export function localDispatcher(executor: OperationExecutor): Dispatcher {
  return executor;
}

export { PROJECT_ROOT } from '../../src/kube/templates.js';
export { renderWith, userDataOf } from '../kube/helpers.js';

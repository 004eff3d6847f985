// Lint rules. The Raft core (src/raft) must stay a pure state machine: no I/O, no clock,
// no ambient randomness, no async. Those bans are enforced here rather than by review.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const coreBans = {
  'no-restricted-imports': [
    'error',
    {
      patterns: [
        {
          group: ['node:*', 'fs', 'path', 'os', 'net', 'http', 'crypto'],
          message: 'The Raft core does no I/O.',
        },
      ],
    },
  ],
  'no-restricted-globals': [
    'error',
    { name: 'setTimeout', message: 'Time enters the core only through tick().' },
    { name: 'setInterval', message: 'Time enters the core only through tick().' },
    { name: 'setImmediate', message: 'Time enters the core only through tick().' },
    { name: 'queueMicrotask', message: 'The core is synchronous.' },
    { name: 'process', message: 'The core does no I/O.' },
    { name: 'performance', message: 'Time enters the core only through tick().' },
  ],
  'no-restricted-properties': [
    'error',
    { object: 'Math', property: 'random', message: 'Randomness is injected as a seeded source.' },
    { object: 'Date', property: 'now', message: 'Time enters the core only through tick().' },
  ],
  'no-restricted-syntax': [
    'error',
    {
      selector: 'NewExpression[callee.name="Date"]',
      message: 'Time enters the core only through tick().',
    },
    { selector: 'AwaitExpression', message: 'The core is synchronous.' },
    { selector: 'FunctionDeclaration[async=true]', message: 'The core is synchronous.' },
  ],
};

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'data/', 'assembly/', 'bench/results/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  { files: ['src/raft/**/*.ts'], rules: coreBans },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
